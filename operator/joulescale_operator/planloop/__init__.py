"""The operator's planner loop: Prometheus -> TrafficWindow -> the core planner -> status.plan,
status.energy, replicas and base clocks. Pure parts (promql, observation, energy, loop) take a
metrics source and a planner as seams; the kopf daemon and the Prometheus client are the shell
(daemon.py, prometheus.py)."""
