"""What `emergency serve` counts, in Prometheus' format: one registry per service."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

# Minutes matter here: contact within 15 minutes, steps late by seconds.
CONTACT_BUCKETS = (60, 120, 300, 600, 900, 1200, 1800, 3600, 7200)
LATENESS_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
PASS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60)


class Metrics:
    """The service's counters, gauges and histograms (see README, "Served mode")."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.passes = Counter("emergency_passes", "Passes over every emergency",
                              ["outcome"], registry=r)
        self.pass_seconds = Histogram("emergency_pass_duration_seconds", "Duration of a pass",
                                      buckets=PASS_BUCKETS, registry=r)
        self.handlings = Counter("emergency_ticket_handlings",
                                 "Tickets handled on their own, by what woke the worker",
                                 ["reason"], registry=r)
        self.steps = Counter("emergency_steps", "Steps taken, by step and outcome",
                             ["step", "outcome"], registry=r)
        self.contact_seconds = Histogram(
            "emergency_time_to_contact_seconds",
            "From the ticket becoming urgent to the first contact", buckets=CONTACT_BUCKETS,
            registry=r)
        self.lateness_seconds = Histogram(
            "emergency_step_lateness_seconds", "How long after its due time a step went out",
            ["step"], buckets=LATENESS_BUCKETS, registry=r)
        self.live = Gauge("emergency_live", "Live emergencies by state", ["state"], registry=r)
        self.pending = Gauge("emergency_lines_pending",
                             "Slack lines and PagerDuty steps waiting for their service",
                             ["service"], registry=r)
        self.webhooks = Counter("emergency_webhook_deliveries",
                                "Webhook deliveries by source and outcome",
                                ["source", "outcome"], registry=r)

    def watch_rate_limits(self, waits: Callable[[], Iterable[tuple[str, int, float]]]) -> None:
        """Count the services' rate-limit waits, read when scraped: (service, waits, seconds)."""
        self.registry.register(_RateLimits(waits))

    def set_live(self, states: Iterable[str]) -> None:
        counts: dict[str, int] = {}
        for state in states:
            counts[state] = counts.get(state, 0) + 1
        for labels in list(self.live._metrics):  # states no longer live go to 0
            self.live.labels(*labels).set(0)
        for state, count in counts.items():
            self.live.labels(state).set(count)


class _RateLimits(Collector):
    def __init__(self, waits: Callable[[], Iterable[tuple[str, int, float]]]) -> None:
        self.waits = waits

    def collect(self) -> Iterable[Metric]:
        count = CounterMetricFamily("emergency_rate_limit_waits",
                                    "Waits for a service's Retry-After", labels=["service"])
        seconds = CounterMetricFamily("emergency_rate_limit_wait_seconds",
                                      "Seconds spent waiting for Retry-After", labels=["service"])
        for service, waits, waited in self.waits():
            count.add_metric([service], waits)
            seconds.add_metric([service], waited)
        yield count
        yield seconds
