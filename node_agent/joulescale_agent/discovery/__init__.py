"""Where the engine instances of this node come from: a static file, or the Kubernetes API."""

from joulescale_agent.discovery.base import Desired, Discovery
from joulescale_agent.discovery.static import StaticDiscovery

__all__ = ["Desired", "Discovery", "StaticDiscovery"]
