"""Read a role's pods, only while the role is not ready, to say why (over a Cluster).

One list call per not-ready role, by the role's selector labels: a ready service costs no
read at all. A refusal (an operator installed without the pods grant) leaves the condition as
the Deployment alone would make it; an outage propagates like any other read.
"""

from __future__ import annotations

import dataclasses
import logging

from joulescale_operator.identity import Role, ServiceIdentity
from joulescale_operator.kube import Cluster, Rejected
from joulescale_operator.pod_problems import pods_of_deployment, pods_problem
from joulescale_operator.status import DeploymentObservation, needs_pod_reading

logger = logging.getLogger(__name__)


def with_pod_problems(
    cluster: Cluster, identity: ServiceIdentity, observed: dict[Role, DeploymentObservation | None]
) -> dict[Role, DeploymentObservation | None]:
    """observed, where each not-ready role carries the problem its pods show (if any)."""
    result = dict(observed)
    for role, observation in observed.items():
        if observation is None or not needs_pod_reading(observation):
            continue
        try:
            pods = cluster.list_pods(identity.namespace, identity.selector(role))
        except Rejected as refused:
            logger.warning("%s/%s: the %s pods cannot be read: %s", identity.namespace, identity.name, role, refused)
            continue
        problem = pods_problem(pods_of_deployment(pods, identity.child_name(role)))
        if problem is not None:
            result[role] = dataclasses.replace(observation, pod_problem=problem)
    return result
