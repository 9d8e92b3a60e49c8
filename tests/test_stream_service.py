"""`stream` as a long-running service, through real processes: Prometheus metrics scraped from
the port, and SIGHUP reloading the model file."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from dataclasses import replace

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

import streamcast as sc
from streamcast.cli import main
from streamcast.stream import reload
from streamcast.stream.state import StreamState
from tests.conftest import TINY
from tests.test_cli_stream import spawn


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample at `url`, keyed by name and labels."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape_until(url: str, name: str, labels: tuple, value: float) -> dict:
    """The metrics are updated just after each batch's output: wait for the last batch's."""
    deadline = time.monotonic() + 20
    while True:
        samples = scrape(url)
        if samples.get((name, labels)) == value or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def send(proc, line: str) -> dict:
    proc.stdin.write((line + "\n").encode())
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def test_metrics_are_served_on_the_port_while_the_stream_runs(tmp_path, tiny_model):
    path = tmp_path / "model.streamcast"
    sc.save(tiny_model, path)
    proc = spawn(path, "--metrics-port", "127.0.0.1:0", "--watch", "--state", str(tmp_path / "s.state"))
    try:
        announced = proc.stderr.readline().decode().strip()
        assert announced.startswith("metrics on http://127.0.0.1:") and announced.endswith("/metrics")
        url = announced.removeprefix("metrics on ")
        for h in range(3):
            for sid in ("a", "b"):
                send(proc, f"{sid},2024-01-01 0{h}:00,{10 + h}")
        proc.stdin.write(b"a,not a time,3\nb,2024-01-01 03:00,oops\n")
        send(proc, "a,2024-01-01 03:00,13")
        # Lines are counted as a micro-batch is read, the rest once its forecasts are out.
        scrape_until(url, "streamcast_stream_lines_total", (), 9.0)
        samples = scrape_until(url, "streamcast_stream_accepted_total", (), 7.0)
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert proc.returncode == 0
    assert samples[("streamcast_stream_lines_total", ())] == 9
    assert samples[("streamcast_stream_accepted_total", ())] == 7
    assert samples[("streamcast_stream_skipped_total", (("reason", "timestamp"),))] == 1
    assert samples[("streamcast_stream_skipped_total", (("reason", "malformed"),))] == 1
    assert samples[("streamcast_stream_skipped_total", (("reason", "replayed"),))] == 0
    assert samples[("streamcast_stream_series", ())] == 2
    assert samples[("streamcast_stream_anomalies_total", ())] == 0
    assert samples[("streamcast_stream_batch_seconds_count", ())] >= 4
    assert 0 <= samples[("streamcast_stream_checkpoint_age_seconds", ())] < 600


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path, tiny_model):
    path = tmp_path / "model.streamcast"
    sc.save(tiny_model, path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["stream", "-m", str(path), "--metrics-port", f"127.0.0.1:{port}"], input=""
        )
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: --metrics-port {port}: cannot listen on 127.0.0.1:{port} (Address already in use); pick another port\n"
    )


@pytest.fixture(scope="module")
def refitted(tiny_data):
    """The same shape fitted again with another seed, as a nightly fit would."""
    return sc.fit(tiny_data, replace(TINY, seed=1))


def forecasts_after(old, new, lines: list[str], then: str) -> list[float]:
    """What the library forecasts for `then` after `old` streamed `lines` and `new` took over."""
    records = [dict(zip(("series_id", "timestamp", "value"), line.split(","), strict=True)) for line in lines]
    state = StreamState(old)
    for _ in sc.stream(old, [sc.Observations.from_records(records, old)], state):
        pass
    if new is not old:
        reload.adopt(state, old, new, "model")
    last = dict(zip(("series_id", "timestamp", "value"), then.split(","), strict=True))
    (batch,) = sc.stream(new, [sc.Observations.from_records([last], new)], state)
    return next(iter(batch)).forecast


def test_sighup_reloads_the_model_file_keeping_every_state_and_refuses_one_of_another_shape(
    tmp_path, tiny_model, tiny_data, refitted
):
    path = tmp_path / "model.streamcast"
    sc.save(tiny_model, path)
    lines = [f"s0,2024-01-01 {h:02d}:00,{10 + h % 3}" for h in range(12)]
    proc = spawn(path, "--warmup-ticks", "4")
    try:
        for line in lines[:8]:
            send(proc, line)
        sc.save(sc.fit(tiny_data, replace(TINY, hidden_size=4, epochs=1)), path)
        proc.send_signal(signal.SIGHUP)
        refused = proc.stderr.readline().decode()
        still_old = send(proc, lines[8])
        for line in lines[9:11]:
            send(proc, line)
        sc.save(refitted, path)
        proc.send_signal(signal.SIGHUP)
        reloaded = proc.stderr.readline().decode()
        after = send(proc, lines[11])
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert proc.returncode == 0
    assert refused == (
        f"SIGHUP: {path} not reloaded: its state shapes are (1, 4) (1, 4) (168), the stream's (1, 8) (1, 8) "
        "(168); still serving the old model\n"
    )
    assert still_old["forecast"] == pytest.approx(
        forecasts_after(tiny_model, tiny_model, lines[:8], lines[8]), rel=1e-5
    )
    assert reloaded == f"SIGHUP: reloaded {path}; 1 series keep their states\n"
    assert after["warming_up"] is False  # the state carried on: a fresh one would warm up again
    expected = forecasts_after(tiny_model, refitted, lines[:11], lines[11])
    assert after["forecast"] == pytest.approx(expected, rel=1e-5)
    assert after["forecast"] != pytest.approx(forecasts_after(tiny_model, tiny_model, lines[:11], lines[11]))


def test_lines_of_another_partition_are_counted_as_skipped_in_the_metrics(tmp_path, tiny_model):
    from streamcast.shards import shard_of

    path = tmp_path / "model.streamcast"
    sc.save(tiny_model, path)
    ours = next(f"s{i}" for i in range(100) if shard_of(f"s{i}", 2) == 0)
    theirs = next(f"s{i}" for i in range(100) if shard_of(f"s{i}", 2) == 1)
    proc = spawn(path, "--metrics-port", "127.0.0.1:0", "--partition", "0/2")
    try:
        url = proc.stderr.readline().decode().strip().removeprefix("metrics on ")
        proc.stdin.write(f"{theirs},2024-01-01 00:00,10\n{theirs},2024-01-01 01:00,11\n".encode())
        assert send(proc, f"{ours},2024-01-01 00:00,10")["series_id"] == ours
        # Each counter is set on its own after the batch's output: wait for the ones asserted.
        scrape_until(url, "streamcast_stream_accepted_total", (), 1.0)
        samples = scrape_until(url, "streamcast_stream_skipped_total", (("reason", "other_partition"),), 2.0)
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert proc.returncode == 0
    assert samples[("streamcast_stream_skipped_total", (("reason", "other_partition"),))] == 2
    assert samples[("streamcast_stream_accepted_total", ())] == 1
