"""Tests of the metric backends and of the Prometheus test support."""
