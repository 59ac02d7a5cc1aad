"""A simulated vLLM-compatible engine for tests, end-to-end runs and demos.

It serves OpenAI ``/v1/completions`` (streaming and not) and a vLLM V1 ``/metrics`` page, and
times its iterations with the profile physics (joulescale.profiles.physics) at the clock of the
simulated GPUs that the agent controls through a shared directory (joulescale_agent.gpu.simstate).
"""
