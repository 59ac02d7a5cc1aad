"""A simulated LLM engine for tests, end-to-end runs and demos.

It serves OpenAI ``/v1/completions`` (streaming and not) and a vLLM V1 or SGLang ``/metrics``
page. It drives the core engine model (joulescale.engines.model, the one the twin drives) in
real time, timing each step with the profile physics at the clock of the simulated GPUs that the
agent controls through a shared directory (joulescale_agent.gpu.simstate).
"""
