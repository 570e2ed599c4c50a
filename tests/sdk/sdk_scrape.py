"""Scrape a monitor's exposition text (or any /metrics text) and look series up by labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from modelrollout_sdk import ModelMonitor


class Series:
    """The samples of one scrape, queried by name and a subset of labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text) for s in family.samples
        ]

    def find(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (lab, value)
            for n, lab, value in self.samples
            if n == name and all(lab.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        found = self.find(name, **labels)
        assert len(found) == 1, f"expected one {name}{labels}, found {found}"
        return found[0][1]


def scrape_monitor(monitor: ModelMonitor) -> Series:
    body, _ = monitor.exposition()
    return Series(body.decode())
