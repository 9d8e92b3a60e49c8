"""Checkpoint and restore every series' stream state: safetensors + JSON, written atomically.

A state file belongs to one model: it records the model's fingerprint and refuses another model.
On restart, each series skips lines at or before its checkpointed timestamp (replays), so feeding
the producer's stream again from an earlier point neither loses nor duplicates anything before
the checkpoint; what came after it is recomputed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import safetensors
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from streamcast.atomic import atomic_write_bytes
from streamcast.errors import ModelFileError
from streamcast.forecaster import Forecaster
from streamcast.model import concat_states
from streamcast.streaming import SeriesState, StreamState

FORMAT = "streamcast-stream-state"
_FIELDS = ("loc", "scale", "last_value", "ticks", "warming", "count", "mean", "abs_mean", "m2")


def model_fingerprint(forecaster: Forecaster) -> str:
    """Changes whenever the weights do, so that a state never runs on a model it was not made by."""
    digest = hashlib.sha256()
    for name, tensor in sorted(forecaster.net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_state(state: StreamState, path: str | Path, fingerprint: str) -> None:
    ids = list(state.series)
    tensors = {}
    if ids:
        stacked = concat_states([state.series[s].hidden for s in ids])
        tensors = {f"hidden.{i}": t.contiguous() for i, t in enumerate(stacked)}
    series = []
    for sid in ids:
        s = state.series[sid]
        record = {"id": sid, "last_time": _time_out(s.last_time)}
        record.update({f: getattr(s, f) for f in _FIELDS})
        series.append(record)
    meta = {"format": FORMAT, "version": 1, "model": fingerprint, "lines": state.lines, "series": series}
    atomic_write_bytes(path, save_bytes(tensors, metadata={"streamcast": json.dumps(meta)}))


def load_state(path: str | Path, fingerprint: str) -> StreamState:
    raw = Path(path).read_bytes()
    try:
        tensors = load_bytes(raw)
        meta = json.loads(_metadata(raw))
    except (ValueError, KeyError, safetensors.SafetensorError):
        raise ModelFileError(
            f"{path}: not a streamcast state file (damaged?); move it away to start fresh"
        ) from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a streamcast state file; move it away to start fresh")
    if meta["model"] != fingerprint:
        raise ModelFileError(
            f"{path}: this state was written for another model; use that model or another --state file"
        )
    hidden = [tensors[f"hidden.{i}"] for i in range(len(tensors))]
    state = StreamState(lines=meta["lines"])
    for i, record in enumerate(meta["series"]):
        s = SeriesState(tuple(t[i : i + 1].clone() for t in hidden), record["loc"], record["scale"])
        for f in _FIELDS:
            setattr(s, f, record[f])
        s.last_time = _time_in(record["last_time"])
        state.series[record["id"]] = s
        if s.last_time is not None:
            state.replay_until[record["id"]] = s.last_time
    return state


def _metadata(raw: bytes) -> str:
    size = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + size])["__metadata__"]["streamcast"]


def _time_out(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _time_in(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value
