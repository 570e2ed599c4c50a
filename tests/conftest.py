"""One real Prometheus and one real control plane for the whole test session (see tests/support/)."""

pytest_plugins = ["tests.support.prometheus", "tests.support.control_plane"]
