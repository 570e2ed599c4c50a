"""One real Prometheus for the whole test session (see tests/support/prometheus.py)."""

pytest_plugins = ["tests.support.prometheus"]
