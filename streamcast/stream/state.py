"""Every series' stream state, keyed by series id, and its checkpoint file.

The file is safetensors (hidden states, scales, clocks as tensors; never a pickle) with JSON metadata,
written atomically, so a kill at any moment leaves the previous checkpoint whole. It records a
fingerprint of the model's weights and scales and refuses any other model. With online learning it
also holds the adapted weights, the optimizer's moments and each series' learning window, so that a
restart continues exactly where the checkpoint left off.

Everything here is numpy: a stream keeps and checkpoints its states without torch, which only the
online learner (imported when a checkpoint has one) needs.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from itertools import chain
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

import streamcast
from streamcast import safefile
from streamcast.errors import DAMAGED_FILE, ModelFileError, first_line
from streamcast.netconfig import recorded_fields
from streamcast.schema import StateMeta, validate
from streamcast.stream.watch import SeriesWatch, check_watch_tensors, watch_for

if TYPE_CHECKING:
    from streamcast.forecaster import Forecaster
    from streamcast.online import OnlineLearner

Hidden = tuple[np.ndarray, ...]
"""Hidden state parts as the network's `State` holds them, a row per series: (S, ...) each."""

FORMAT = "streamcast-stream-state"
FORMAT_VERSION = 2  # 2: a sha256 of the whole file in the header


def model_fingerprint(forecaster: Forecaster) -> str:
    """Changes whenever the weights, shape, features or scales do: a state only fits its own model."""
    digest = hashlib.sha256()
    config = recorded_fields(forecaster.net.config)  # the states of older models still fit them
    digest.update(json.dumps([config, asdict(forecaster.spec)], sort_keys=True).encode())
    for name, tensor in sorted(forecaster.net.state_dict().items()):
        digest.update(name.encode())
        digest.update(to_numpy(tensor).tobytes())
    digest.update(json.dumps([forecaster.scaler.loc, forecaster.scaler.scale], sort_keys=True).encode())
    return "sha256:" + digest.hexdigest()[:32]


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor's values (on the CPU, out of any graph) or a numpy array, as a contiguous
    numpy array, without importing torch: a network's weights and states are either."""
    if hasattr(value, "detach"):
        return value.detach().cpu().contiguous().numpy()
    return np.asarray(value, order="C")


_WRITTEN_LISTS = (  # the per-series lists a checkpoint holds (`_series_tensors`)
    "ids",
    "loc",
    "scale",
    "frozen",
    "welford",
    "last_time",
    "last_value",
    "last_covariates",
    "ticks",
    "since_reset",
)


class StreamState:
    """Hidden state rows, scale, last time and value, and tick counts of every series seen so far.

    Scalars live in plain lists (the per-tick rules read them one at a time, where numpy scalars are
    slow); hidden states live in one growing numpy array per state part, a row per series.
    """

    def __init__(self, forecaster: Forecaster) -> None:
        self.fingerprint = model_fingerprint(forecaster)
        self._scaler = forecaster.scaler
        self._template = tuple(to_numpy(p) for p in forecaster.net.init_state(1))  # states live on the CPU
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.hidden: Hidden = tuple(np.zeros((16, *p.shape[1:]), p.dtype) for p in self._template)
        self.loc: list[float] = []
        self.scale: list[float] = []
        self.frozen: list[bool] = []  # the scale is final (the model's, the warm-up data's, or warmed up)
        self.welford: list[list[float]] = []  # count, mean, M2, sum of |x| while the scale warms up
        self.last_time: list[int | None] = []
        self.last_value: list[float] = []
        self.last_covariates: list[list[float] | None] = []
        self.ticks: list[int] = []  # observations taken since the series was first seen
        self.since_reset: list[int] = []  # observations since its state was last zero
        self.resumed: list[bool] = []  # loaded from a checkpoint, no new line yet in this run
        self.last_seen: list[int] = []  # the `accepted` count at the series' latest observation
        self.jumps: dict[int, int] = {}  # series -> time of an implausible jump awaiting its next line
        self.newest: int | None = None  # the latest time of any observation (for --idle-evict)
        self.time_zone: str | None = None
        self.lines = 0  # input lines consumed (for reports)
        self.accepted = 0  # observations taken overall (online learning runs on this clock)
        self.learner: OnlineLearner | None = None
        self.watch: SeriesWatch | None = None  # pending forecasts and error spreads (--watch)
        # The ids as the last checkpoint's header held them, for the next to reuse: (the list
        # they were read from, how many, their encoding). `evict` makes a new list and drops it.
        self._ids_encoded: tuple[list[str], int, safefile.Encoded] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def load(cls, path: str | Path, forecaster: Forecaster) -> StreamState:
        """Resume from a checkpoint written by `save` for the same model."""
        return load_state(path, forecaster)

    def series_index(self, series_id: str) -> int:
        """The row of `series_id`, added with a zero state if it is new."""
        s = self.index.get(series_id)
        if s is not None:
            return s
        s = self.index[series_id] = len(self.ids)
        self.ids.append(series_id)
        if s >= self.hidden[0].shape[0]:
            self.hidden = tuple(np.concatenate([p, np.zeros_like(p)]) for p in self.hidden)
        known = series_id in self._scaler.loc
        self.loc.append(self._scaler.loc[series_id] if known else 0.0)
        self.scale.append(self._scaler.scale[series_id] if known else 1.0)
        self.frozen.append(known)
        self.welford.append([0, 0.0, 0.0, 0.0])
        self.last_time.append(None)
        self.last_value.append(0.0)
        self.last_covariates.append(None)
        self.ticks.append(0)
        self.since_reset.append(0)
        self.resumed.append(False)
        self.last_seen.append(self.accepted)
        return s

    _SERIES_LISTS = (*_WRITTEN_LISTS, "resumed", "last_seen")  # a run's own besides

    def evict(self, rows: list[int]) -> None:
        """Forget the series at `rows` entirely; the others keep their order, renumbered."""
        gone = set(rows)
        keep = [s for s in range(len(self.ids)) if s not in gone]
        renumber = {old: new for new, old in enumerate(keep)}
        for name in self._SERIES_LISTS:
            values = getattr(self, name)
            setattr(self, name, [values[s] for s in keep])
        self.hidden = tuple(_rows_kept(p, keep) for p in self.hidden)
        self.index = {sid: s for s, sid in enumerate(self.ids)}
        self._ids_encoded = None  # and the old list with it
        self.jumps = {renumber[s]: t for s, t in self.jumps.items() if s in renumber}
        if self.learner is not None:
            self.learner.renumber(renumber)
        if self.watch is not None:
            self.watch.ensure(len(gone) + len(keep))
            self.watch.keep(keep)

    def rows(self, series: list[int], fresh: list[bool]) -> Hidden:
        """The states of `series` as one batch (copies); rows marked fresh start from zero."""
        index = np.asarray(series, dtype=np.intp)
        rows = tuple(p[index] for p in self.hidden)
        if any(fresh):  # most micro-batches, and a line at a time, have none
            zero = np.asarray(fresh, dtype=bool)
            for part in rows:
                part[zero] = 0.0
        return rows

    def set_rows(self, series: list[int], state: Hidden) -> None:
        """Store each series' new state (one row each, in the order of `series`). Rows that are
        CPU torch tensors are taken too: `np.asarray` reads their memory without importing torch."""
        index = np.asarray(series, dtype=np.intp)
        for part, rows in zip(self.hidden, state, strict=True):
            part[index] = np.asarray(rows)

    def check_model(self, forecaster: Forecaster) -> None:
        if model_fingerprint(forecaster) != self.fingerprint:
            raise ModelFileError(
                "this stream state was made with another model; use that model or a new state"
            )

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically."""
        safefile.save(path, *self.snapshot()())
        return Path(path)

    def snapshot(
        self, copy: bool = False
    ) -> Callable[[], tuple[dict[str, np.ndarray | safefile.Later], dict]]:
        """A function that builds the checkpoint's tensors and metadata as the state is now.

        With `copy`, it builds them from copies taken here, so that a second thread can build and
        write them while the stream goes on: the per-series lists are copied shallowly (their
        items are replaced, never changed in place), the hidden rows cloned, and the learner's and
        the watch's tensors taken now. Building the file's columns from the lists, about a second
        at a million series, is then the writer's work and not the stream's."""
        n = len(self.ids)
        lists = {name: list(getattr(self, name)) if copy else getattr(self, name) for name in _WRITTEN_LISTS}
        hidden = tuple(p[:n].copy() if copy else p[:n] for p in self.hidden)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.fingerprint,
            "time_zone": self.time_zone,
            "lines": self.lines,
            "accepted": self.accepted,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "streamcast": streamcast.__version__,
        }
        extra: dict[str, np.ndarray] = {}
        if self.learner is not None:
            learned, meta["learner"] = self.learner.to_tensors()  # copies
            extra.update({f"learn.{k}": v for k, v in learned.items()})
        if self.watch is not None:
            self.watch.ensure(n)
            extra.update(self.watch.to_tensors())  # copies
            meta["watch"] = {"quantiles": list(self.watch.quantiles)}

        live, cached = self.ids, self._ids_encoded
        if cached is not None and cached[0] is not live:
            cached = None

        def build() -> tuple[dict[str, np.ndarray | safefile.Later], dict]:
            tensors = _series_tensors(SimpleNamespace(hidden=hidden, **lists))
            tensors.update(extra)
            before, start = (cached[2], cached[1]) if cached is not None else (None, 0)
            ids = safefile.encoded_list(lists["ids"], before, start)
            self._ids_encoded = (live, n, ids)  # the next snapshot waits for this one's build
            return tensors, {**meta, "series_ids": ids}

        return build


def _rows_kept(part: np.ndarray, keep: list[int]) -> np.ndarray:
    """The rows `keep` of a hidden part, gathered straight into a new array with room to grow by
    doubling (no second copy: a million series' state is a gigabyte)."""
    room = max(16, len(keep))
    kept = np.zeros((room, *part.shape[1:]), part.dtype)
    np.take(part, np.asarray(keep, dtype=np.intp), axis=0, out=kept[: len(keep)])
    return kept


def _series_tensors(state: SimpleNamespace) -> dict[str, np.ndarray | safefile.Later]:
    """The hidden rows and per-series lists as the file's tensors (`load_state` reads them back).
    The lists' columns are built while the hidden rows are written (`safefile.Later`)."""
    n = len(state.ids)
    tensors: dict[str, np.ndarray | safefile.Later] = {
        f"hidden.{j}": p[:n] for j, p in enumerate(state.hidden)
    }
    covariates = state.last_covariates
    width = 0 if covariates.count(None) == n else max(len(c) for c in covariates if c is not None)

    def later(name: str, dtype, values: Callable[[], Iterable], per_row: int | None = None) -> None:
        shape = (n,) if per_row is None else (n, per_row)
        tensors[name] = safefile.Later(
            np.dtype(dtype).name, shape, lambda: _column(values(), dtype, math.prod(shape)).reshape(shape)
        )

    later("loc", np.float64, lambda: state.loc)
    later("scale", np.float64, lambda: state.scale)
    later("frozen", np.bool_, lambda: state.frozen)
    later("welford", np.float64, lambda: chain.from_iterable(state.welford), 4)
    later("timed", np.bool_, lambda: (t is not None for t in state.last_time))
    later("last_time", np.int64, lambda: (t or 0 for t in state.last_time))
    later("last_value", np.float64, lambda: state.last_value)
    later("has_covariates", np.bool_, lambda: (c is not None for c in covariates))
    later(
        "last_covariates",
        np.float64,
        lambda: chain.from_iterable(c or [0.0] * width for c in covariates),
        width,
    )
    later("ticks", np.int64, lambda: state.ticks)
    later("since_reset", np.int64, lambda: state.since_reset)
    return tensors


def _column(values: Iterable, dtype, count: int) -> np.ndarray:
    return np.fromiter(values, dtype=dtype, count=count)


def load_state(path: str | Path, forecaster: Forecaster) -> StreamState:
    """Read a checkpoint for `forecaster`; a foreign, damaged or other-model file is a ModelFileError.

    The file's checksum is verified on a second thread while its tensors are read and checked
    (hashing a gigabyte takes about a second, and releases the GIL)."""
    if not Path(path).is_file():
        raise ModelFileError(f"state file {str(path)!r} not found: check the path, or start without one")
    raw = _read(path)
    meta = _metadata(raw, path)
    version = meta.get("format_version", 0)
    with ThreadPoolExecutor(1) as pool:
        sealed = pool.submit(safefile.check, raw, meta, version >= 2)
        try:
            state = _from_file(raw, meta, path, forecaster)
            sealed.result()
        except (
            *DAMAGED_FILE,
            OverflowError,
            safefile.Damaged,
            ModelFileError,
        ) as exc:
            reason = first_line(exc)
            try:  # damage the checksum sees is the reason, whatever it broke on the way
                sealed.result()
            except safefile.Damaged as damaged:
                reason = first_line(damaged)
            else:
                if isinstance(exc, ModelFileError):
                    raise
            raise ModelFileError(
                f"{path}: the state file is damaged ({reason}); move it away to start fresh"
            ) from None
    return state


def holds_learner(path: str | Path) -> bool:
    """Whether the state file at `path` holds an online learner (`stream --learn`), read from its
    header alone (a million series' file is a gigabyte): such a state resumes with torch, whose
    learner serves its own adapted weights. False for a file that is not there or not readable:
    loading it says why."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if size > os.fstat(f.fileno()).st_size:
                return False
            meta = safefile.header(size.to_bytes(8, "little") + f.read(size))
    except (OSError, safefile.Damaged):
        return False
    return "learner" in meta


def _read(path: str | Path) -> bytearray:
    """The whole file in one writable buffer, which the loaded hidden states then share."""
    with open(path, "rb") as f:
        raw = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(raw)
    return raw


def _from_file(raw: bytearray, meta: dict, path: str | Path, forecaster: Forecaster) -> StreamState:
    state = StreamState(forecaster)
    if meta.get("model") != state.fingerprint:
        raise ModelFileError(
            f"{path}: this state file was written for another model (fingerprint {str(meta.get('model'))[:15]}, "
            f"the model has {state.fingerprint[:15]}): pass the model it was made with, or a new --state file"
        )
    tensors = safefile.read_tensors(raw)
    _check_layout(tensors, path, len(state._template))
    ids = meta["series_ids"]
    spec = forecaster.spec
    width = len(spec.covariates) + len(spec.future_covariates) * spec.future_steps
    _check_tensors(tensors, len(ids), width, state._template)
    n = len(ids)
    state.ids = list(ids)
    state.index = dict(zip(state.ids, range(n), strict=True))
    state.hidden = tuple(
        tensors[f"hidden.{j}"]
        if n >= 16
        else np.concatenate([tensors[f"hidden.{j}"], np.zeros((16 - n, *p.shape[1:]), p.dtype)])
        for j, p in enumerate(state.hidden)
    )
    with _no_collection():
        _take_lists(state, tensors)
    state.newest = max((t for t in state.last_time if t is not None), default=None)
    state.time_zone = meta["time_zone"]
    state.lines = meta["lines"]
    state.accepted = meta["accepted"]
    if "learner" in meta:
        from streamcast.forecaster import served_by_numpy

        if served_by_numpy(forecaster):
            raise ModelFileError(
                f"{path}: this state file holds an online learner (stream --learn), which serves its "
                "own adapted weights with torch: resume it with --learn, or with --device auto"
            )
        from streamcast.online import OnlineLearner  # torch, needed only to go on learning

        learned = {k[6:]: v for k, v in tensors.items() if k.startswith("learn.")}
        state.learner = OnlineLearner.from_tensors(forecaster, learned, meta["learner"])
    if "watch" in meta:
        state.watch = watch_for(forecaster)
        state.watch.load_tensors(tensors)
    return state


def _take_lists(state: StreamState, tensors: dict[str, np.ndarray]) -> None:
    n = len(state.ids)
    state.last_seen = [0] * n
    state.loc = tensors["loc"].tolist()
    state.scale = tensors["scale"].tolist()
    state.frozen = tensors["frozen"].tolist()
    state.welford = tensors["welford"].tolist()
    timed = tensors["timed"].tolist()
    state.last_time = [t if ok else None for t, ok in zip(tensors["last_time"].tolist(), timed, strict=True)]
    state.last_value = tensors["last_value"].tolist()
    has = tensors["has_covariates"]
    state.last_covariates = (
        [c if ok else None for c, ok in zip(tensors["last_covariates"].tolist(), has.tolist(), strict=True)]
        if bool(has.any())
        else [None] * n
    )
    state.ticks = tensors["ticks"].tolist()
    state.since_reset = tensors["since_reset"].tolist()
    state.resumed = [True] * n


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """Millions of new lists would set off the cycle collector again and again over the whole heap
    (seconds at a million series); none of them can form a cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# Each per-series tensor of a state file: its dtype, and its shape after the row per series
# (None: any width, checked below).
_F64, _BOOL, _I64 = np.dtype(np.float64), np.dtype(np.bool_), np.dtype(np.int64)
_PER_SERIES = {
    "loc": (_F64, ()),
    "scale": (_F64, ()),
    "last_value": (_F64, ()),
    "frozen": (_BOOL, ()),
    "timed": (_BOOL, ()),
    "has_covariates": (_BOOL, ()),
    "last_time": (_I64, ()),
    "ticks": (_I64, ()),
    "since_reset": (_I64, ()),
    "welford": (_F64, (4,)),
    "last_covariates": (_F64, None),
}


def _check_layout(tensors: dict[str, np.ndarray], path, parts: int) -> None:
    """A whole file of another layout of the same model's state is not damaged: say what it is."""
    held = sum(1 for name in tensors if name.startswith("hidden."))
    if held != parts:
        raise ModelFileError(
            f"{path}: this state file keeps {held} state parts per series where this streamcast keeps "
            f"{parts} for the model (an ensemble's file from before its members shared one window): "
            "move it away to start fresh, or restart with --warmup from the history"
        )


def _check_tensors(tensors: dict[str, np.ndarray], n: int, n_covariates: int, template: Hidden) -> None:
    """Every per-series tensor of the right dtype with a row per series, hidden states shaped as
    the model's, finite numbers, counts that count, a learner that names held series only."""
    for name, (dtype, rest) in _PER_SERIES.items():
        tensor = tensors[name]
        shape = (n, *rest) if rest is not None else (n, n_covariates if tensor.size else 0)
        if tensor.dtype != dtype or tensor.shape != shape:
            raise ValueError(f"tensor {name!r} is {tensor.dtype} {tensor.shape}, not {dtype} {shape}")
    for j, part in enumerate(template):
        tensor = tensors[f"hidden.{j}"]
        if tensor.dtype != part.dtype or tensor.shape != (n, *part.shape[1:]):
            raise ValueError(f"tensor 'hidden.{j}' does not fit the model's state")
    if any(v.dtype.kind == "f" and not _finite(v) for v in tensors.values()):
        raise ValueError("a number is not finite")
    if not bool((tensors["scale"] > 0).all()):
        raise ValueError("a series scale is not positive")
    if bool((tensors["ticks"] < 0).any()) or bool((tensors["since_reset"] < 0).any()):
        raise ValueError("a tick count is negative")
    check_watch_tensors(tensors, n)
    series, lengths = tensors.get("learn.series"), tensors.get("learn.lengths")
    if series is None:
        return
    if series.dtype != _I64 or series.ndim != 1 or lengths is None or lengths.shape != series.shape:
        raise ValueError("the learner's series do not fit")
    if bool(((series < 0) | (series >= n)).any()) or bool((lengths < 0).any()):
        raise ValueError("the learner names a series the state does not hold")


_FINITE_CHUNK = 1 << 20  # numbers: a chunk and its mask stay in cache


def _finite(values: np.ndarray) -> bool:
    """In chunks: isfinite over the whole array would make a mask the size of the hidden states
    (a gigabyte at a million series), and min and max would read them twice."""
    flat = values.reshape(-1)
    return all(np.isfinite(flat[i : i + _FINITE_CHUNK]).all() for i in range(0, flat.size, _FINITE_CHUNK))


def _metadata(raw: bytes, path: str | Path) -> dict:
    problem = f"{path}: not a streamcast state file; move it away or pass another --state file"
    try:
        meta = safefile.header(raw)
    except safefile.Damaged:
        raise ModelFileError(problem) from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(problem)
    version = meta.get("format_version", 0)
    if not isinstance(version, int):
        raise ModelFileError(problem)
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: written by a newer streamcast; upgrade streamcast to resume from it")
    try:
        validate(meta, StateMeta)
    except ValueError as exc:
        raise ModelFileError(
            f"{path}: the state file is damaged ({first_line(exc)}); move it away to start fresh"
        ) from None
    return meta
