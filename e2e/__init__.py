"""End-to-end tests and the local control-plane harness shared with tests/."""
