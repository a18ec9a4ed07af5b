"""Prometheus metrics, read from the components' own counters at scrape time.

Nothing here runs on the hot path: the hub and the writer keep plain integer
counters, and this collector turns them into metrics when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from serenchat.hub import Hub
from serenchat.store.writer import WriterStats


class ServerCollector(Collector):
    def __init__(self, hub: Hub, writer: WriterStats) -> None:
        self._hub = hub
        self._writer = writer

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "serenchat_connections", "Open client connections", self._hub.connections
        )
        yield CounterMetricFamily(
            "serenchat_messages_stored",
            "Messages committed by this process",
            self._writer.messages,
        )
        yield CounterMetricFamily(
            "serenchat_commit_batches",
            "Transactions the group-commit writer ran",
            self._writer.batches,
        )
        yield GaugeMetricFamily(
            "serenchat_commit_batch_largest",
            "Most messages one transaction carried",
            self._writer.largest_batch,
        )
        yield CounterMetricFamily(
            "serenchat_fanout_frames_encoded",
            "Frames encoded by fan-out (one per broadcast and wire format)",
            self._hub.encoded,
        )
        yield CounterMetricFamily(
            "serenchat_fanout_deliveries",
            "Frames handed to local subscribers by fan-out",
            self._hub.delivered,
        )
        yield CounterMetricFamily(
            "serenchat_fanout_writes",
            "Writes fan-out handed to local subscribers (a commit's frames for "
            "one subscriber go in one write)",
            self._hub.writes,
        )
