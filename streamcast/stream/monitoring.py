"""Prometheus metrics of a running stream (`stream --metrics-port`), served over HTTP.

Uses prometheus_client, an optional dependency (`pip install 'streamcast[metrics]'`): the library
and every other command work without it. Each session has its own registry, so two streams in one
process (tests, notebooks) never share counters.

Skipped lines are counted by a coarse reason: `replayed` (before a resumed checkpoint), `timestamp`
(a time that cannot be read, repeats, goes back, leaves the grid or jumps), `value` (not positive
under a log model) and `malformed` (everything else the parser refuses).
"""

from __future__ import annotations

import time

from streamcast.errors import UsageError
from streamcast.stream.engine import StreamBatch

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
SKIP_REASONS = ("replayed", "timestamp", "value", "malformed", "other_partition")


def parse_address(text: str) -> tuple[str, int]:
    """`PORT` (every interface, as exporters do) or `HOST:PORT`; a UsageError otherwise."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise UsageError(f"--metrics-port {text!r}: give a port number (0-65535), or HOST:PORT")
    return host.strip("[]") or "0.0.0.0", number


class StreamMetrics:
    """The counters, gauges and latency histogram of one stream, and the HTTP server for them."""

    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError:
            raise UsageError(
                "--metrics-port needs prometheus_client: pip install 'streamcast[metrics]'"
            ) from None
        self.registry = CollectorRegistry()
        r = self.registry
        self.lines = Counter("streamcast_stream_lines", "Input lines read.", registry=r)
        self.accepted = Counter("streamcast_stream_accepted", "Observations taken in.", registry=r)
        self.skipped = Counter(
            "streamcast_stream_skipped", "Lines skipped, by reason.", ["reason"], registry=r
        )
        self.events = Counter(
            "streamcast_stream_events",
            "Gaps filled, series reset or evicted, input fields ignored.",
            ["kind"],
            registry=r,
        )
        self.anomalies = Counter("streamcast_stream_anomalies", "Observations flagged (--watch).", registry=r)
        self.reloads = Counter(
            "streamcast_stream_model_reloads", "SIGHUP reloads, by outcome.", ["outcome"], registry=r
        )
        self.series = Gauge("streamcast_stream_series", "Series held in memory.", registry=r)
        self.checkpoint_age = Gauge(
            "streamcast_stream_checkpoint_age_seconds",
            "Seconds since the last checkpoint (since the start before the first).",
            registry=r,
        )
        self.latency = Histogram(
            "streamcast_stream_batch_seconds",
            "From a micro-batch's lines read to its forecasts flushed.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        for reason in SKIP_REASONS:
            self.skipped.labels(reason)
        for kind in ("filled", "reset", "evicted", "ignored"):
            self.events.labels(kind)
        self.saved_at = time.monotonic()
        self.checkpoint_age.set_function(lambda: time.monotonic() - self.saved_at)
        self.read_at: float | None = None
        self.server = None

    def serve(self, host: str, port: int) -> int:
        """Start serving /metrics on a daemon thread; the port bound (the one picked, for port 0)."""
        from prometheus_client import start_http_server

        try:
            self.server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise UsageError(
                f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror}); pick another port"
            ) from None
        return self.server.server_port

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def started(self, lines: int) -> None:
        self.lines.inc(lines)
        self.read_at = time.monotonic() if lines else None

    def handed_over(self) -> float | None:
        """When the batch now handed to the output was read; its latency ends when it is out."""
        read_at, self.read_at = self.read_at, None
        return read_at

    def finished(self, batch: StreamBatch, series: int, read_at: float | None) -> None:
        """A micro-batch's forecasts are out (`read_at`: from `handed_over`)."""
        if read_at is not None:
            self.latency.observe(time.monotonic() - read_at)
        self.accepted.inc(batch.accepted)
        self.anomalies.inc(batch.anomalies)
        self.skipped.labels("replayed").inc(batch.replayed)
        self.skipped.labels("other_partition").inc(batch.other_partition)
        self.events.labels("evicted").inc(batch.evicted)
        for event in batch.events:
            if event.kind == "skipped":
                self.skipped.labels(_reason(event.reason)).inc()
            else:
                self.events.labels(event.kind).inc()
        self.series.set(series)

    def checkpointed(self) -> None:
        self.saved_at = time.monotonic()

    def reloaded(self, outcome: str) -> None:
        self.reloads.labels(outcome).inc()


def _reason(text: str) -> str:
    if "timestamp" in text or "time " in text:
        return "timestamp"
    if "not positive" in text:
        return "value"
    return "malformed"
