"""Test support shared by every test tier: a real Prometheus and an exporter whose series tests set."""
