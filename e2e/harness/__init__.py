"""A real local Kubernetes control plane for tests: provisioning, processes, fake GPU nodes."""
