"""The two ways a policy sees an instance (docs/architecture.md, "What a policy can observe").

``metrics`` is what the node agent builds from a /metrics scrape taken every ``period`` and
visible ``delay`` later: the simulated engine's page (``joulescale.engines.recorder``, in the
engine's dialect) turned into an observation by the agent's own builder
(``joulescale.engines.observe``), so a policy sees what the agent would. ``rich`` is the engine
hook: each instance publishes the hook's messages (``joulescale.engines.hook_publish``) at every
scheduling call and step end, and the same builder turns them into the observation at each
scheduling call, as the agent does with the messages it reads from the hook's socket.
"""

from __future__ import annotations

from typing import Literal

ViewName = Literal["metrics", "rich"]
VIEW_NAMES: tuple[ViewName, ...] = ("metrics", "rich")
