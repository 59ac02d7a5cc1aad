"""Condition types and reasons, in one place (CamelCase reasons for machines)."""

from __future__ import annotations

from typing import Final

READY: Final = "Ready"
PREFILL_READY: Final = "PrefillReady"
DECODE_READY: Final = "DecodeReady"
ROUTER_READY: Final = "RouterReady"
DEGRADED: Final = "Degraded"
DVFS_ACTIVE: Final = "DVFSActive"

ALL_REPLICAS_READY: Final = "AllReplicasReady"
REPLICAS_NOT_READY: Final = "ReplicasNotReady"
ROLLOUT_IN_PROGRESS: Final = "RolloutInProgress"
SCALED_TO_ZERO: Final = "ScaledToZero"
DEPLOYMENT_MISSING: Final = "DeploymentMissing"
PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
ROLES_NOT_READY: Final = "RolesNotReady"
UNSCHEDULABLE: Final = "Unschedulable"
"""A role's pod is Pending with PodScheduled=False; the message is the scheduler's."""
REPLICA_FAILURE: Final = "ReplicaFailure"
INVALID_SPEC: Final = "InvalidSpec"
APPLY_FAILED: Final = "ApplyFailed"
AS_EXPECTED: Final = "AsExpected"
RENDER_FAILED: Final = "RenderFailed"
"""The spec passed validation but rendering its children raised: a bug or a shape the model let in."""
NOT_OWNED: Final = "ChildNotOwned"
"""An object with a child's name exists and was not created by this service: it is left alone."""
NO_PROFILE: Final = "NoProfile"
"""DVFSActive=False: some role has no profile for a GPU product it may run on; those pods run
without clock control."""
PROFILES_FOUND: Final = "ProfilesFound"
POLICY_OFF: Final = "PolicyOff"

CHILD_CREATED: Final = "Created"
CHILD_SCALED: Final = "Scaled"
CHILD_UPDATED: Final = "Updated"
"""Reasons of the Normal events for a child the operator really changed (no-op applies are silent)."""

PLANNED: Final = "Planned"
"""Condition type of the planner loop, and its reason when the last pass planned from fresh data."""
PROMETHEUS_UNAVAILABLE: Final = "PrometheusUnavailable"
"""Planned=False: Prometheus did not answer, or holds no engine series of the service; the last
plan stays, and nothing is scaled down."""
PLAN_FAILED: Final = "PlanFailed"
"""Planned=False: the planner found no placement (or raised); the last plan stays."""
NO_ENGINE_METRICS: Final = "NoEngineMetrics"
"""Planned=False: the service's engine has no metric names the planner loop knows."""
PLAN_CHANGED: Final = "PlanChanged"
"""The Normal event of a new plan (replicas or base clocks)."""
SLO_TARGET_BETWEEN_BUCKETS: Final = "SloTargetBetweenBuckets"
"""The Normal event (once, and a sentence in the Planned condition) when an SLO target falls
between two bucket edges of the engine's latency histogram: its attainment is interpolated."""
