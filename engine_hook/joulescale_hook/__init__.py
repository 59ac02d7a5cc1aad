"""JouleScale's engine hook: the engine's scheduler tells the node agent what each step will
compute before it runs, over a Unix datagram socket (docs/engine-hook.md).

This package depends on nothing outside the standard library and on nothing of JouleScale, so an
engine image installs it alone. The engine adapters (``joulescale_hook.vllm_scheduler``,
``joulescale_hook.sglang_plugin``) import their engine lazily; the schema and the transport import
no engine at all.
"""

from joulescale_hook.schema import (
    MAX_ENTRIES,
    VERSION,
    Engine,
    HookDecodeError,
    Kind,
    Message,
    StepDone,
    StepScheduled,
    decode,
    encode,
)
from joulescale_hook.transport import (
    HookPublisher,
    HookReceiver,
    PublisherStats,
    socket_path,
    socket_path_from_env,
)

__all__ = [
    "MAX_ENTRIES", "VERSION", "Engine", "HookDecodeError", "HookPublisher", "HookReceiver", "Kind",
    "Message", "PublisherStats", "StepDone", "StepScheduled", "decode", "encode", "socket_path",
    "socket_path_from_env",
]
