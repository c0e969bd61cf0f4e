"""The service's Prometheus metrics: decisions, fallbacks and errors by reason code, ingestion,
back-pressure, and the lake writer's queue, read live from its stats at scrape time.

Each app gets its own registry, so several services (or tests) in one process never collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from decisioning.engine import Decision
from momento.lake.writer import LakeWriter

# Decision latency: 50 us .. 50 ms, dense around the 10 ms budget.
_LATENCY_BUCKETS = (5e-5, 1e-4, 2e-4, 3e-4, 5e-4, 7.5e-4, 1e-3, 2e-3, 5e-3, 7.5e-3, 1e-2, 1.5e-2, 2.5e-2, 5e-2)


class _WriterCollector(Collector):
    """The writer's counters and queue depth, read when Prometheus scrapes."""

    def __init__(self, writer: LakeWriter, pending: Callable[[], int]) -> None:
        self.writer, self.pending = writer, pending

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self.writer.stats
        yield GaugeMetricFamily(
            "momento_writer_queue_rows", "Rows buffered in the lake writer, not yet committed.", value=stats.queued_rows
        )
        yield GaugeMetricFamily(
            "momento_writer_queue_limit_rows", "The writer's bound on buffered rows.", value=self.writer.queue_limit
        )
        yield GaugeMetricFamily(
            "momento_decision_log_pending_rows",
            "Decision rows waiting to be handed to the writer.",
            value=self.pending(),
        )
        for name, help_text, value in (
            ("momento_writer_committed_rows", "Rows committed to the lake.", stats.committed_rows),
            ("momento_writer_commits", "Delta commits made by the writer.", stats.commits),
            ("momento_writer_duplicates_dropped", "Re-sent rows dropped by primary key.", stats.duplicates_dropped),
            ("momento_writer_rejected_batches", "Batches refused by schema validation.", stats.rejected_batches),
            (
                "momento_writer_queue_full_rejections",
                "Appends refused because the writer queue was full.",
                stats.queue_full_rejections,
            ),
            ("momento_writer_flush_errors", "Flushes that failed (rows kept and retried).", stats.flush_errors),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        if stats.last_flush_at is not None:
            yield GaugeMetricFamily(
                "momento_writer_last_flush_timestamp_seconds",
                "When the writer last committed.",
                value=stats.last_flush_at,
            )


class Telemetry:
    """Every metric the service exports, on a private registry."""

    def __init__(self, writer: LakeWriter, pending_decisions: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decision_seconds = Histogram(
            "momento_decision_duration_seconds",
            "In-process decision time.",
            ["placement"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "momento_decisions",
            "Decisions served, by placement, policy and first reason code.",
            ["placement", "policy", "reason"],
            registry=r,
        )
        self.fallbacks = Counter(
            "momento_fallbacks", "Decisions that fell back to the default, by reason code.", ["reason"], registry=r
        )
        self.errors = Counter(
            "momento_decision_errors", "Decisions with status error, by error code.", ["code"], registry=r
        )
        self.events = Counter("momento_events_ingested", "Events accepted, by type.", ["event_type"], registry=r)
        self.exposures = Counter("momento_exposures_ingested", "Exposures accepted.", registry=r)
        self.identities = Counter("momento_identities_linked", "Anonymous ids linked to customers.", registry=r)
        self.erasures = Counter("momento_erasures", "Users erased on request.", registry=r)
        self.outcomes = Counter("momento_policy_outcomes", "Rewards credited to a policy's decision.", registry=r)
        self.backpressure = Counter(
            "momento_backpressure_rejections",
            "Requests refused with 503 because the writer queue was full.",
            ["endpoint"],
            registry=r,
        )
        self.rejections = Counter(
            "momento_rejected_requests",
            "Requests refused with a 4xx, by status and error.",
            ["status", "error"],
            registry=r,
        )
        self.rate_limited = Counter(
            "momento_rate_limited_requests",
            "Requests refused with 429 because their client passed its rate limit.",
            ["endpoint"],
            registry=r,
        )
        self.unexpected = Counter(
            "momento_unexpected_errors", "Exceptions caught by the last-resort handler.", ["endpoint"], registry=r
        )
        r.register(_WriterCollector(writer, pending_decisions))
        # (placement, policy, first reason) -> its histogram and counter: looking labelled
        # children up through `labels()` costs more than the observation on the decide path
        self._per_decision: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def record(self, decision: Decision) -> None:
        """Count one decision."""
        key = (decision.placement, decision.policy, decision.reasons[0] if decision.reasons else "")
        children = self._per_decision.get(key)
        if children is None:
            children = self._per_decision[key] = (self.decision_seconds.labels(key[0]), self.decisions.labels(*key))
        children[0].observe(decision.latency_us / 1e6)
        children[1].inc()
        if decision.fallback:
            self.fallbacks.labels(decision.fallback_reason).inc()
        if decision.status == "error":
            self.errors.labels(decision.error_code).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, with its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
