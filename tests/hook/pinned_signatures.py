"""What the hook relies on in vLLM and SGLang, recorded from the pinned releases' sources.

Recorded by hand from the released wheels (vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl,
vllm/_version.py commit g4ba787ec9; sglang-0.5.23-cp311-cp311-manylinux_2_34_x86_64.whl): each
entry is a file in the wheel, the line of the definition, and for methods the parameters
(``name=default`` where the pinned source has a default). The tests check the hook's overrides
against the methods and allow it to read only the attributes named here; the stand-ins in
test_hook_vllm.py and test_hook_sglang.py have exactly these names. Moving the pins means
re-reading these lines in the new release and updating the table (docs/engine-hook.md).
"""

from __future__ import annotations

from dataclasses import dataclass

VLLM_VERSION = "0.33.0"
SGLANG_VERSION = "0.5.23"


@dataclass(frozen=True)
class Pinned:
    file: str
    line: int
    name: str
    """Class, ``Class.method`` or ``Class.attribute``."""
    params: tuple[str, ...] | None = None
    """A method's parameters after ``self``; None for attributes and classes."""
    note: str = ""


VLLM: tuple[Pinned, ...] = (
    Pinned("vllm/v1/core/sched/async_scheduler.py", 13, "AsyncScheduler", note="class AsyncScheduler(Scheduler)"),
    Pinned("vllm/v1/core/sched/scheduler.py", 699, "Scheduler.schedule", ("throttle_prefills=False",)),
    Pinned("vllm/v1/core/sched/scheduler.py", 2259, "Scheduler.update_from_output",
           ("scheduler_output", "model_runner_output")),
    Pinned("vllm/v1/core/sched/scheduler.py", 223, "Scheduler.requests", note="dict[str, Request]"),
    Pinned("vllm/v1/core/sched/scheduler.py", 232, "Scheduler.waiting",
           note="RequestQueue: __bool__ (request_queue.py:60), __len__ (:65), __iter__ (:70)"),
    Pinned("vllm/v1/core/sched/scheduler.py", 1858, "Scheduler._update_after_schedule",
           note="called inside schedule(): num_computed_tokens += scheduled tokens"),
    Pinned("vllm/v1/core/sched/output.py", 244, "SchedulerOutput.num_scheduled_tokens",
           note="dict[str, int], req_id -> tokens"),
    Pinned("vllm/v1/core/sched/output.py", 236, "SchedulerOutput.scheduled_new_reqs",
           note="list[NewRequestData], built in schedule() (scheduler.py:1646) before the step"),
    Pinned("vllm/v1/core/sched/output.py", 240, "SchedulerOutput.scheduled_cached_reqs",
           note="CachedRequestData, built at scheduler.py:1665 before _update_after_schedule (1783)"),
    Pinned("vllm/v1/core/sched/output.py", 42, "NewRequestData.req_id"),
    Pinned("vllm/v1/core/sched/output.py", 43, "NewRequestData.prompt_token_ids", note="list[int] | None"),
    Pinned("vllm/v1/core/sched/output.py", 48, "NewRequestData.num_computed_tokens"),
    Pinned("vllm/v1/core/sched/output.py", 139, "CachedRequestData.req_ids"),
    Pinned("vllm/v1/core/sched/output.py", 151, "CachedRequestData.num_computed_tokens"),
    Pinned("vllm/v1/core/sched/output.py", 152, "CachedRequestData.num_output_tokens",
           note="num_output_tokens + num_output_placeholders (scheduler.py:1967)"),
    Pinned("vllm/v1/request.py", 98, "Request.arrival_time", note="time.time() when not given"),
    Pinned("vllm/v1/request.py", 143, "Request.num_prompt_tokens"),
    Pinned("vllm/v1/request.py", 184, "Request.num_computed_tokens"),
    Pinned("vllm/v1/request.py", 303, "Request.num_output_tokens", note="property"),
    Pinned("vllm/config/scheduler.py", 231, "SchedulerConfig.get_scheduler_cls",
           note="resolve_obj_by_qualname(scheduler_cls) at line 256"),
)

SGLANG: tuple[Pinned, ...] = (
    Pinned("sglang/srt/plugins/__init__.py", 29, "GENERAL_PLUGINS_GROUP", note='"sglang.srt.plugins"'),
    Pinned("sglang/srt/environ.py", 2137, "SGLANG_PLUGINS", note="allowlist; empty loads every plugin"),
    Pinned("sglang/srt/plugins/hook_registry.py", 84, "HookRegistry.register",
           ("target", "hook", "hook_type=HookType.AFTER")),
    Pinned("sglang/srt/plugins/hook_registry.py", 60, "HookType",
           note="BEFORE: fn(*args, **kwargs) -> (args, kwargs) or None; "
                "AFTER: fn(result, *args, **kwargs) -> new_result or None"),
    Pinned("sglang/srt/managers/scheduler.py", 4614, "Scheduler.run_batch",
           ("batch", "pp_proxy_tensors=None")),
    Pinned("sglang/srt/managers/scheduler.py", 5074, "Scheduler.process_batch_result", ("batch", "result")),
    Pinned("sglang/srt/managers/scheduler.py", 1326, "Scheduler.waiting_queue", note="List[Req]"),
    Pinned("sglang/srt/managers/schedule_batch.py", 2460, "ScheduleBatch.reqs"),
    Pinned("sglang/srt/managers/schedule_batch.py", 2588, "ScheduleBatch.forward_mode"),
    Pinned("sglang/srt/managers/schedule_batch.py", 2647, "ScheduleBatch.prefix_lens"),
    Pinned("sglang/srt/managers/schedule_batch.py", 2648, "ScheduleBatch.extend_lens"),
    Pinned("sglang/srt/model_executor/forward_batch_info.py", 227, "ForwardMode.is_extend",
           ("include_draft_extend_v2=False",)),
    Pinned("sglang/srt/model_executor/forward_batch_info.py", 248, "ForwardMode.is_decode", ()),
    Pinned("sglang/srt/managers/schedule_batch.py", 1090, "Req.origin_input_ids"),
    Pinned("sglang/srt/managers/schedule_batch.py", 1100, "Req.output_ids"),
    Pinned("sglang/srt/managers/schedule_batch.py", 1490, "Req.seqlen", note="property"),
    Pinned("sglang/srt/managers/schedule_batch.py", 1390, "Req.time_stats"),
    Pinned("sglang/srt/observability/req_time_stats.py", 647, "SchedulerReqTimeStats.scheduler_recv_time",
           note="time.perf_counter() (set_scheduler_recv_time, line 707)"),
)


def find(table: tuple[Pinned, ...], name: str) -> Pinned:
    for entry in table:
        if entry.name == name:
            return entry
    raise KeyError(f"{name} is not in the pinned table")


def attribute_names(table: tuple[Pinned, ...]) -> set[str]:
    """The bare names (after the last dot) the hook may read on the engine's objects."""
    return {entry.name.rsplit(".", 1)[-1] for entry in table}
