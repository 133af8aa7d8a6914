"""Reading a Prometheus text exposition with the client's own parser, for assertions."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """Every sample of one exposition, looked up by sample name and labels."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.families: set[str] = set()
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        """The sample's value, or None when the exposition has no such series."""
        return self.samples.get((name, frozenset(labels.items())))

    def names(self) -> set[str]:
        """Every sample name (``_total``, ``_bucket``, ``_count`` and ``_sum`` included) and family name."""
        return {name for name, _ in self.samples} | self.families

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        """Every series of one sample name, by its labels."""
        return {labels: value for (sample, labels), value in self.samples.items() if sample == name}

    def by(self, name: str, label: str) -> dict[str, float]:
        """The series of one sample name that vary in one label, by that label's value."""
        return {dict(labels).get(label, ""): value for labels, value in self.series(name).items()}
