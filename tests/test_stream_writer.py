"""`stream`'s output thread: what a reader of stdout sees must not depend on which thread wrote it."""

from __future__ import annotations

import io
import threading
import time

import pytest

from streamcast.stream.output import SMALL_BATCH
from streamcast.stream.writer import OutputWriter


class Lines:
    """A batch of `n` lines named by `tag`."""

    def __init__(self, tag: str, n: int) -> None:
        self.tag, self.n = tag, n

    def __len__(self) -> int:
        return self.n


class SlowText:
    """Formats a batch as one line per row, slowly for big batches (the thread stays busy), and
    records which thread formatted each batch."""

    def __init__(self) -> None:
        self.threads: dict[str, str] = {}

    def header(self) -> str:
        return "header\n"

    def render(self, batch: Lines) -> bytes:
        self.threads[batch.tag] = threading.current_thread().name
        if batch.n > SMALL_BATCH:
            time.sleep(0.2)  # long enough that the next batch arrives while this one is written
        return "".join(f"{batch.tag}:{i}\n" for i in range(batch.n)).encode()


def test_batches_come_out_in_order_with_one_header_whichever_thread_writes_them():
    out, text = io.BytesIO(), SlowText()
    writer = OutputWriter(out, text)
    batches = [Lines("a", 1), Lines("b", 100), Lines("c", 1), Lines("d", 200), Lines("e", 2), Lines("f", 0)]
    for batch in batches:
        writer.write(batch)
    writer.drain()
    writer.close()
    expected = "header\n" + "".join(f"{b.tag}:{i}\n" for b in batches for i in range(b.n))
    assert out.getvalue().decode() == expected
    # A few lines that find the thread idle are written at once; behind a big batch they queue.
    assert text.threads["a"] == threading.current_thread().name
    assert text.threads["b"] == text.threads["c"] == "streamcast-output"


def test_what_follows_a_batch_runs_right_after_its_lines_in_whichever_thread_wrote_them():
    """A batch's stderr messages and counts (`after`) must not run before its lines are out: a
    reader of both streams would see a message ahead of the forecasts before it."""
    out = io.BytesIO()
    writer = OutputWriter(out, SlowText())
    for tag, n in (("a", 1), ("b", 40), ("c", 2)):
        writer.write(Lines(tag, n), after=lambda tag=tag: out.write(f"after {tag}\n".encode()))
    writer.drain()
    writer.close()
    text = out.getvalue().decode().splitlines()
    assert text.index("after a") == text.index("a:0") + 1
    assert text.index("after b") == text.index("b:39") + 1 and text.index("after c") == len(text) - 1


def test_drain_returns_only_when_every_batch_is_out():
    out = io.BytesIO()
    writer = OutputWriter(out, SlowText())
    for k in range(3):
        writer.write(Lines(f"big{k}", 50))
    writer.drain()
    assert out.getvalue().decode().count("\n") == 1 + 150  # the header and every line
    writer.close()


class ClosedPipe(io.BytesIO):
    def write(self, data):  # the reader of stdout has gone
        raise BrokenPipeError(32, "Broken pipe")


def test_a_write_that_fails_in_the_thread_is_raised_in_the_callers_and_the_rest_is_dropped():
    writer = OutputWriter(ClosedPipe(), SlowText())
    writer.write(Lines("big", 100))
    with pytest.raises(BrokenPipeError):
        writer.drain()
    with pytest.raises(BrokenPipeError):  # and again at the next batch: nothing is written after it
        writer.write(Lines("next", 100))
    writer.close()  # returns: the thread has stopped


def test_a_checkpoint_is_taken_only_once_the_output_of_every_line_it_covers_is_out(
    model_path, tmp_path, monkeypatch
):
    """The output thread lags (each batch it writes takes 50 ms): each checkpoint must still find
    every accepted line's forecast written, or a SIGKILL after it would lose them for good (the
    restart skips what the checkpoint holds as replays)."""
    from click.testing import CliRunner

    from streamcast.cli import main
    from streamcast.stream import checkpoints, writer
    from tests.conftest import hourly_frame

    lines = [
        f"{sid},{ts:%Y-%m-%d %H:%M},{value:.3f}"
        for sid, ts, value in hourly_frame(length=60).sort("timestamp", "series_id").iter_rows()
    ]
    written = []
    slow_write = writer.OutputWriter._write

    def lagging(self, batch, after):
        if len(batch) > SMALL_BATCH:
            time.sleep(0.05)
        slow_write(self, batch, after)
        written.append(len(batch))

    seen = []
    save = checkpoints.Checkpoints.save

    def checked(self, forecaster, final=False):
        seen.append((self.state.accepted, sum(written)))
        save(self, forecaster, final)

    monkeypatch.setattr(writer.OutputWriter, "_write", lagging)
    monkeypatch.setattr(checkpoints.Checkpoints, "save", checked)
    state = tmp_path / "stream.state"
    args = ["stream", "-m", str(model_path), "-q", "--state", str(state), "--batch-lines", "40"]
    result = CliRunner().invoke(main, [*args, "--checkpoint-every", "50"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    assert len(seen) >= 3 and all(accepted == out for accepted, out in seen), seen
    assert len(result.stdout.splitlines()) == len(lines)


def test_a_batchs_latency_metric_runs_until_its_lines_are_written(model_path, monkeypatch):
    """`streamcast_stream_batch_seconds` is from lines read to forecasts flushed: with the text
    made in the second thread, it must still end at the flush, not at the hand-over."""
    from click.testing import CliRunner

    from streamcast.cli import main
    from streamcast.stream import monitoring, writer
    from tests.conftest import hourly_frame

    lines = [
        f"{sid},{ts:%Y-%m-%d %H:%M},{value:.3f}"
        for sid, ts, value in hourly_frame(length=60).sort("timestamp", "series_id").iter_rows()
    ]
    slow_write = writer.OutputWriter._write

    def lagging(self, batch, after):
        time.sleep(0.2)
        slow_write(self, batch, after)

    latencies = []
    finished = monitoring.StreamMetrics.finished

    def timed(self, batch, series, read_at):
        latencies.append(time.monotonic() - read_at)
        finished(self, batch, series, read_at)

    monkeypatch.setattr(writer.OutputWriter, "_write", lagging)
    monkeypatch.setattr(monitoring.StreamMetrics, "finished", timed)
    args = ["stream", "-m", str(model_path), "-q", "--batch-lines", "40", "--metrics-port", "127.0.0.1:0"]
    result = CliRunner().invoke(main, args, input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    assert len(latencies) >= 3 and min(latencies) >= 0.2, latencies
