"""DVFSActive: a service whose pods will have no profile says so on its status, with one event."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from joulescale.profiles import catalog_from_dir, load_profile
from joulescale_operator import reasons
from joulescale_operator.reconcile import Reconciler
from joulescale_operator.settings import OperatorSettings

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
LLAMA_70B = "meta-llama/Llama-3.3-70B-Instruct"
SAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "samples"


def _role(tp: int, *products: str) -> dict[str, Any]:
    return {"replicas": 1, "tensorParallelSize": tp, "gpu": {"products": list(products)}}


def _run(reconciler: Reconciler, body: dict[str, Any]) -> dict[str, Any]:
    """Reconcile, fold the patch into the body as the apiserver would; the DVFSActive condition."""
    patch = reconciler.reconcile(body)
    body["status"] = {k: v for k, v in {**body.get("status", {}), **patch}.items() if v is not None}
    return next(c for c in body["status"]["conditions"] if c["type"] == reasons.DVFS_ACTIVE)


@pytest.mark.parametrize(("prefill", "decode", "missing"), [
    # Another model's profile on the same GPU and TP size is no stand-in (the agent's old fallback).
    (_role(4, H100), _role(8, H100), ["prefill: TP4 on NVIDIA-H100-80GB-HBM3",
                                      "decode: TP8 on NVIDIA-H100-80GB-HBM3"]),
    # The same model at another TP size is another physics too.
    (_role(1, H100), _role(2, H100), ["decode: TP2 on NVIDIA-H100-80GB-HBM3"]),
    # One product of two without a profile: the pods landing there would run unmanaged.
    (_role(1, H100), _role(1, H100, "NVIDIA-L40S"), ["decode: TP1 on NVIDIA-L40S"]),
])
def test_a_role_without_a_profile_is_dvfs_active_false_no_profile_with_one_warning(
    prefill: dict[str, Any], decode: dict[str, Any], missing: list[str], memory_cluster: Any, events: Any,
    clock: Any, body_factory: Callable[..., Any],
) -> None:
    model = "Qwen/Qwen2.5-32B-Instruct" if prefill["tensorParallelSize"] == 4 else "meta-llama/Llama-3.1-8B-Instruct"
    body = body_factory(model={"name": model}, prefill=prefill, decode=decode)
    reconciler = Reconciler(memory_cluster, events, clock)
    dvfs = _run(reconciler, body)
    assert (dvfs["status"], dvfs["reason"]) == ("False", reasons.NO_PROFILE)
    for entry in missing:
        assert entry in dvfs["message"]
    assert dvfs["message"].count(" on ") == len(missing)
    assert events.warnings == [(reasons.NO_PROFILE, dvfs["message"])]
    _run(reconciler, body)  # the resync meets the same service again: no second event
    assert len(events.warnings) == 1


def test_every_role_with_a_profile_is_dvfs_active_true_and_quiet(
    memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory(model={"name": LLAMA_70B}, prefill=_role(8, H100), decode=_role(4, H100))
    dvfs = _run(Reconciler(memory_cluster, events, clock), body)
    assert (dvfs["status"], dvfs["reason"]) == ("True", reasons.PROFILES_FOUND)
    assert events.warnings == []


def test_a_user_profile_turns_the_condition_true_and_policy_off_says_so(
    tmp_path: Path, memory_cluster: Any, events: Any, clock: Any, body_factory: Callable[..., Any]
) -> None:
    body = body_factory(model={"name": LLAMA_70B}, prefill=_role(2, A100), decode=_role(4, H100))
    assert _run(Reconciler(memory_cluster, events, clock), copy.deepcopy(body))["reason"] == reasons.NO_PROFILE
    mine = load_profile("h100-sxm-llama-70b-tp4").model_dump(mode="json", exclude_none=True)
    mine.update(name="measured-70b-tp2", gpu_product=A100, tensor_parallel_size=2, kv_capacity_tokens=100_000,
                kv_capacity_derivation=None)
    (tmp_path / "tp2.yaml").write_text(yaml.safe_dump(mine), encoding="utf-8")
    catalog, problems = catalog_from_dir(tmp_path)
    assert problems == []
    reconciler = Reconciler(memory_cluster, events, clock, profiles=catalog)
    assert _run(reconciler, body)["reason"] == reasons.PROFILES_FOUND
    body["spec"]["energy"] = {"policy": "off"}
    body["metadata"]["generation"] = 2
    dvfs = _run(reconciler, body)
    assert (dvfs["status"], dvfs["reason"]) == ("False", reasons.POLICY_OFF)
    assert [reason for reason, _ in events.warnings] == [reasons.NO_PROFILE]


def test_the_samples_that_match_no_shipped_profile_say_so(
    memory_cluster: Any, events: Any, clock: Any
) -> None:
    found = {}
    for path in sorted(SAMPLES.glob("*.yaml")):
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
        body["metadata"].update(namespace="ns", uid="uid-" + path.stem, generation=1)
        found[path.stem] = _run(Reconciler(memory_cluster, events, clock), body)["reason"]
    # vllm-nixl (Llama-70B, prefill TP2 and decode TP4 on H100) is covered since h100-sxm-llama-70b-tp2 ships.
    assert found == {"sglang-mooncake": reasons.NO_PROFILE, "static-clock": reasons.PROFILES_FOUND,
                     "vllm-nixl": reasons.PROFILES_FOUND}


def test_the_operator_takes_a_profiles_dir_flag(tmp_path: Path) -> None:
    from joulescale_operator.main import parse_settings

    settings, _, _ = parse_settings(["--profiles-dir", str(tmp_path)])
    assert settings.profiles_dir == tmp_path
    assert OperatorSettings().profiles_dir is None
    for bad in ("", "a\x00b"):
        with pytest.raises(SystemExit) as refused:
            parse_settings(["--profiles-dir", bad])
        assert refused.value.code == 2
