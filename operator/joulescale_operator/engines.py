"""Engine command lines for prefill/decode disaggregation (pure).

vLLM: `vllm serve` with `--kv-transfer-config`; SGLang: `sglang.launch_server` with
`--disaggregation-mode`. The flags below are the ones the operator
owns, so a user may not repeat them in engine.args (see validation.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from joulescale.api import EnergyAwareLLMServiceSpec, RoleSpec
from joulescale_operator.enginehook import hook_args
from joulescale_operator.identity import Role, ServiceIdentity

NIXL_SIDE_CHANNEL_PORT = 5600
"""vLLM's default NIXL side channel port (VLLM_NIXL_SIDE_CHANNEL_PORT)."""
BOOTSTRAP_PORT = 8998
"""SGLang's disaggregation bootstrap port and vLLM's Mooncake bootstrap port."""
P2P_NCCL_KV_PORT = 21001
SGLANG_BOOTSTRAP_ANNOTATION = "sglang.ai/bootstrap-port"

MANAGED_FLAGS = {
    "vllm": (
        "--port",
        "--tensor-parallel-size",
        "-tp",
        "--kv-transfer-config",
        "--served-model-name",
        "--host",
        "--max-num-batched-tokens",
    ),
    "sglang": (
        "--port",
        "--tp",
        "--tp-size",
        "--model-path",
        "--disaggregation-mode",
        "--disaggregation-transfer-backend",
        "--disaggregation-bootstrap-port",
        "--host",
        "--chunked-prefill-size",
        "--max-prefill-tokens",
    ),
}

_KV_ROLES = {
    "NixlConnector": ("kv_both", "kv_both"),
    "LMCacheConnectorV1": ("kv_both", "kv_both"),
    "P2pNcclConnector": ("kv_producer", "kv_consumer"),
    "MooncakeConnector": ("kv_producer", "kv_consumer"),
}


@dataclass(frozen=True, slots=True)
class EngineLaunch:
    """What the engine container runs: command, env and the extra ports it listens on."""

    command: list[str]
    env: list[dict[str, Any]]
    ports: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)


def model_source(spec: EnergyAwareLLMServiceSpec) -> str:
    """The model argument: a Hugging Face id or a local path."""
    uri = spec.model.uri or f"hf://{spec.model.name}"
    if uri.startswith("hf://"):
        return uri.removeprefix("hf://")
    return uri.removeprefix("file://")


def _pod_ip_env(name: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def vllm_launch(spec: EnergyAwareLLMServiceSpec, role: Role, identity: ServiceIdentity) -> EngineLaunch:
    connector = spec.kv_transfer.vllm_connector()
    prefill_role, decode_role = _KV_ROLES[connector]
    kv_config: dict[str, Any] = {
        "kv_connector": connector,
        "kv_role": prefill_role if role == "prefill" else decode_role,
    }
    env: list[dict[str, Any]] = []
    ports: list[dict[str, Any]] = []
    if connector == "NixlConnector":
        env += [
            _pod_ip_env("VLLM_NIXL_SIDE_CHANNEL_HOST"),
            {"name": "VLLM_NIXL_SIDE_CHANNEL_PORT", "value": str(NIXL_SIDE_CHANNEL_PORT)},
        ]
        ports.append({"name": "nixl", "containerPort": NIXL_SIDE_CHANNEL_PORT, "protocol": "TCP"})
    elif connector == "P2pNcclConnector":
        kv_config["kv_port"] = str(P2P_NCCL_KV_PORT)
        kv_config["kv_connector_extra_config"] = {
            "proxy_ip": f"{identity.child_name('router')}.{identity.namespace}.svc",
            "proxy_port": "30001",
            "http_port": str(spec.engine.port),
        }
    elif connector == "MooncakeConnector":
        env.append({"name": "VLLM_MOONCAKE_BOOTSTRAP_PORT", "value": str(BOOTSTRAP_PORT)})
        ports.append({"name": "bootstrap", "containerPort": BOOTSTRAP_PORT, "protocol": "TCP"})
    command = [
        "vllm",
        "serve",
        model_source(spec),
        "--host",
        "0.0.0.0",
        "--port",
        str(spec.engine.port),
        "--served-model-name",
        spec.model.name,
        "--tensor-parallel-size",
        str(_role_spec(spec, role).tensor_parallel_size),
        "--kv-transfer-config",
        json.dumps(kv_config, separators=(",", ":"), sort_keys=True),
        "--max-num-batched-tokens",
        str(spec.engine.max_batched_tokens),
        *hook_args(spec),
    ]
    if spec.model.revision:
        command += ["--revision", spec.model.revision]
    return EngineLaunch(command=[*command, *spec.engine.args], env=env, ports=ports)


def sglang_launch(spec: EnergyAwareLLMServiceSpec, role: Role) -> EngineLaunch:
    command = [
        "python3",
        "-m",
        "sglang.launch_server",
        "--model-path",
        model_source(spec),
        "--served-model-name",
        spec.model.name,
        "--host",
        "0.0.0.0",
        "--port",
        str(spec.engine.port),
        "--tp",
        str(_role_spec(spec, role).tensor_parallel_size),
        "--disaggregation-mode",
        role,
        "--disaggregation-transfer-backend",
        spec.kv_transfer.sglang_backend(),
        "--chunked-prefill-size",
        str(spec.engine.max_batched_tokens),
        "--max-prefill-tokens",
        str(spec.engine.max_batched_tokens),
        "--enable-metrics",
    ]
    if spec.model.revision:
        command += ["--revision", spec.model.revision]
    ports: list[dict[str, Any]] = []
    annotations: dict[str, str] = {}
    if role == "prefill":
        command += ["--disaggregation-bootstrap-port", str(BOOTSTRAP_PORT)]
        ports.append({"name": "bootstrap", "containerPort": BOOTSTRAP_PORT, "protocol": "TCP"})
        annotations[SGLANG_BOOTSTRAP_ANNOTATION] = str(BOOTSTRAP_PORT)
    return EngineLaunch(command=[*command, *spec.engine.args], env=[], ports=ports, annotations=annotations)


def engine_launch(spec: EnergyAwareLLMServiceSpec, role: Role, identity: ServiceIdentity) -> EngineLaunch:
    if spec.engine.name == "sglang":
        return sglang_launch(spec, role)
    return vllm_launch(spec, role, identity)


ROUTER_REPOSITORY = "ghcr.io/joulescale/joulescale-router"
"""The vLLM P/D proxy built from router/ (router/Dockerfile), released with the operator."""


def router_image(spec: EnergyAwareLLMServiceSpec) -> str:
    """``router.image``, else SGLang's router from the engine image, else the JouleScale proxy
    of the operator's own version (the images are released together)."""
    if spec.router.image is not None:
        return spec.router.image
    if spec.engine.name == "sglang":
        return spec.engine.image
    return f"{ROUTER_REPOSITORY}:{metadata.version('joulescale')}"


def router_launch(
    spec: EnergyAwareLLMServiceSpec, identity: ServiceIdentity
) -> tuple[list[str] | None, list[str]]:
    """(command, args) of the router: SGLang's router discovers pods by label; a vLLM P/D proxy
    image keeps its entrypoint and gets the role Services in the flags of vLLM's example proxy."""
    port = str(spec.router.port)
    if spec.engine.name == "sglang":

        def selector(role: Role) -> str:
            return ",".join(f"{k}={v}" for k, v in identity.selector(role).items())

        command = [
            "python3",
            "-m",
            "sglang_router.launch_router",
            "--pd-disaggregation",
            "--service-discovery",
            "--service-discovery-namespace",
            identity.namespace,
            "--prefill-selector",
            selector("prefill"),
            "--decode-selector",
            selector("decode"),
            "--service-discovery-port",
            str(spec.engine.port),
            "--host",
            "0.0.0.0",
            "--port",
            port,
        ]
        return [*command, *spec.router.args], []
    engine_port = str(spec.engine.port)
    return None, [
        "--port",
        port,
        "--prefiller-hosts",
        f"{identity.child_name('prefill')}.{identity.namespace}.svc",
        "--prefiller-ports",
        engine_port,
        "--decoder-hosts",
        f"{identity.child_name('decode')}.{identity.namespace}.svc",
        "--decoder-ports",
        engine_port,
        *spec.router.args,
    ]


def _role_spec(spec: EnergyAwareLLMServiceSpec, role: Role) -> RoleSpec:
    return spec.prefill if role == "prefill" else spec.decode
