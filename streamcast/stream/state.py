"""Every series' stream state, keyed by series id, and its checkpoint file.

The file is safetensors (hidden states, scales, clocks as tensors; never a pickle) with JSON metadata,
written atomically, so a kill at any moment leaves the previous checkpoint whole. It records a
fingerprint of the model's weights and scales and refuses any other model. With online learning it
also holds the adapted weights, the optimizer's moments and each series' learning window, so that a
restart continues exactly where the checkpoint left off.
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

import numpy as np
import torch

import streamcast
from streamcast import safefile
from streamcast.errors import DAMAGED_FILE, ModelFileError, first_line
from streamcast.forecaster import Forecaster
from streamcast.model import State
from streamcast.online import OnlineLearner
from streamcast.schema import StateMeta, validate
from streamcast.stream.watch import SeriesWatch, check_watch_tensors, watch_for

FORMAT = "streamcast-stream-state"
FORMAT_VERSION = 2  # 2: a sha256 of the whole file in the header


def model_fingerprint(forecaster: Forecaster) -> str:
    """Changes whenever the weights, shape, features or scales do: a state only fits its own model."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps([asdict(forecaster.net.config), asdict(forecaster.spec)], sort_keys=True).encode()
    )
    for name, tensor in sorted(forecaster.net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps([forecaster.scaler.loc, forecaster.scaler.scale], sort_keys=True).encode())
    return "sha256:" + digest.hexdigest()[:32]


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
    slow); hidden states live in one growing tensor per state part, a row per series.
    """

    def __init__(self, forecaster: Forecaster) -> None:
        self.fingerprint = model_fingerprint(forecaster)
        self._scaler = forecaster.scaler
        self._template = tuple(p.cpu() for p in forecaster.net.init_state(1))  # states live on the CPU
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.hidden: State = tuple(p.new_zeros((16, *p.shape[1:])) for p in self._template)
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
            self.hidden = tuple(torch.cat([p, torch.zeros_like(p)]) for p in self.hidden)
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
        index = torch.tensor(keep, dtype=torch.long)
        room = max(16, len(keep))  # a row for each series kept, and room to grow by doubling
        self.hidden = tuple(
            torch.cat([p[index], p.new_zeros((room - len(keep), *p.shape[1:]))]) for p in self.hidden
        )
        self.index = {sid: s for s, sid in enumerate(self.ids)}
        self.jumps = {renumber[s]: t for s, t in self.jumps.items() if s in renumber}
        if self.learner is not None:
            self.learner.renumber(renumber)
        if self.watch is not None:
            self.watch.ensure(len(gone) + len(keep))
            self.watch.keep(keep)

    def rows(self, series: list[int], fresh: list[bool]) -> State:
        """The states of `series` as one batch; rows marked fresh start from zero."""
        index = torch.tensor(series, dtype=torch.long)
        if not any(fresh):  # most micro-batches, and a line at a time: the rows as they are
            return tuple(p[index] for p in self.hidden)
        zero = torch.tensor(fresh, dtype=torch.bool)
        return tuple(p[index].masked_fill(zero.view(-1, *[1] * (p.dim() - 1)), 0.0) for p in self.hidden)

    def set_rows(self, series: list[int], state: State) -> None:
        index = torch.tensor(series, dtype=torch.long)
        for part, rows in zip(self.hidden, state, strict=True):
            part[index] = rows

    def check_model(self, forecaster: Forecaster) -> None:
        if model_fingerprint(forecaster) != self.fingerprint:
            raise ModelFileError(
                "this stream state was made with another model; use that model or a new state"
            )

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically."""
        safefile.save(path, *self.snapshot()())
        return Path(path)

    def snapshot(self, copy: bool = False) -> Callable[[], tuple[dict[str, torch.Tensor], dict]]:
        """A function that builds the checkpoint's tensors and metadata as the state is now.

        With `copy`, it builds them from copies taken here, so that a second thread can build and
        write them while the stream goes on: the per-series lists are copied shallowly (their
        items are replaced, never changed in place), the hidden rows cloned, and the learner's and
        the watch's tensors taken now. Building the file's columns from the lists, about a second
        at a million series, is then the writer's work and not the stream's."""
        n = len(self.ids)
        lists = {name: list(getattr(self, name)) if copy else getattr(self, name) for name in _WRITTEN_LISTS}
        hidden = tuple(p[:n].clone() if copy else p[:n] for p in self.hidden)
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
        extra: dict[str, torch.Tensor] = {}
        if self.learner is not None:
            learned, meta["learner"] = self.learner.to_tensors()  # copies
            extra.update({f"learn.{k}": v for k, v in learned.items()})
        if self.watch is not None:
            self.watch.ensure(n)
            extra.update(self.watch.to_tensors())  # copies
            meta["watch"] = {"quantiles": list(self.watch.quantiles)}

        def build() -> tuple[dict[str, torch.Tensor], dict]:
            tensors = _series_tensors(SimpleNamespace(hidden=hidden, **lists))
            tensors.update(extra)
            return tensors, {**meta, "series_ids": lists["ids"]}

        return build


def _series_tensors(state: SimpleNamespace) -> dict[str, torch.Tensor]:
    """The hidden rows and per-series lists as the file's tensors (`load_state` reads them back)."""
    n = len(state.ids)
    tensors = {f"hidden.{j}": p[:n] for j, p in enumerate(state.hidden)}
    width = max((len(c) for c in state.last_covariates if c is not None), default=0)
    covs = _column(
        chain.from_iterable(c or [0.0] * width for c in state.last_covariates), np.float64, n * width
    )
    tensors.update(
        {
            "loc": _column(state.loc, np.float64, n),
            "scale": _column(state.scale, np.float64, n),
            "frozen": _column(state.frozen, np.bool_, n),
            "welford": _column(chain.from_iterable(state.welford), np.float64, 4 * n).reshape(n, 4),
            "timed": _column((t is not None for t in state.last_time), np.bool_, n),
            "last_time": _column((t or 0 for t in state.last_time), np.int64, n),
            "last_value": _column(state.last_value, np.float64, n),
            "has_covariates": _column((c is not None for c in state.last_covariates), np.bool_, n),
            "last_covariates": covs.reshape(n, width),
            "ticks": _column(state.ticks, np.int64, n),
            "since_reset": _column(state.since_reset, np.int64, n),
        }
    )
    return tensors


def _column(values: Iterable, dtype, count: int) -> torch.Tensor:
    # numpy takes a million Python numbers at about twice torch.tensor's speed
    return torch.from_numpy(np.fromiter(values, dtype=dtype, count=count))


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
        else torch.cat([tensors[f"hidden.{j}"], p.new_zeros((16 - n, *p.shape[1:]))])
        for j, p in enumerate(state.hidden)
    )
    with _no_collection():
        _take_lists(state, tensors)
    state.newest = max((t for t in state.last_time if t is not None), default=None)
    state.time_zone = meta["time_zone"]
    state.lines = meta["lines"]
    state.accepted = meta["accepted"]
    if "learner" in meta:
        learned = {k[6:]: v for k, v in tensors.items() if k.startswith("learn.")}
        state.learner = OnlineLearner.from_tensors(forecaster, learned, meta["learner"])
    if "watch" in meta:
        state.watch = watch_for(forecaster)
        state.watch.load_tensors(tensors)
    return state


def _take_lists(state: StreamState, tensors: dict[str, torch.Tensor]) -> None:
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
_PER_SERIES = {
    "loc": (torch.float64, ()),
    "scale": (torch.float64, ()),
    "last_value": (torch.float64, ()),
    "frozen": (torch.bool, ()),
    "timed": (torch.bool, ()),
    "has_covariates": (torch.bool, ()),
    "last_time": (torch.int64, ()),
    "ticks": (torch.int64, ()),
    "since_reset": (torch.int64, ()),
    "welford": (torch.float64, (4,)),
    "last_covariates": (torch.float64, None),
}


def _check_layout(tensors: dict[str, torch.Tensor], path, parts: int) -> None:
    """A whole file of another layout of the same model's state is not damaged: say what it is."""
    held = sum(1 for name in tensors if name.startswith("hidden."))
    if held != parts:
        raise ModelFileError(
            f"{path}: this state file keeps {held} state parts per series where this streamcast keeps "
            f"{parts} for the model (an ensemble's file from before its members shared one window): "
            "move it away to start fresh, or restart with --warmup from the history"
        )


def _check_tensors(tensors: dict[str, torch.Tensor], n: int, n_covariates: int, template: State) -> None:
    """Every per-series tensor of the right dtype with a row per series, hidden states shaped as
    the model's, finite numbers, counts that count, a learner that names held series only."""
    for name, (dtype, rest) in _PER_SERIES.items():
        tensor = tensors[name]
        shape = (n, *rest) if rest is not None else (n, n_covariates if tensor.numel() else 0)
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise ValueError(f"tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, not {dtype} {shape}")
    for j, part in enumerate(template):
        tensor = tensors[f"hidden.{j}"]
        if tensor.dtype != part.dtype or tuple(tensor.shape) != (n, *part.shape[1:]):
            raise ValueError(f"tensor 'hidden.{j}' does not fit the model's state")
    if any(v.is_floating_point() and v.numel() and not _finite(v) for v in tensors.values()):
        raise ValueError("a number is not finite")
    if not bool((tensors["scale"] > 0).all()):
        raise ValueError("a series scale is not positive")
    if bool((tensors["ticks"] < 0).any()) or bool((tensors["since_reset"] < 0).any()):
        raise ValueError("a tick count is negative")
    check_watch_tensors(tensors, n)
    series, lengths = tensors.get("learn.series"), tensors.get("learn.lengths")
    if series is None:
        return
    if series.dtype != torch.int64 or series.dim() != 1 or lengths is None or lengths.shape != series.shape:
        raise ValueError("the learner's series do not fit")
    if bool(((series < 0) | (series >= n)).any()) or bool((lengths < 0).any()):
        raise ValueError("the learner names a series the state does not hold")


def _finite(tensor: torch.Tensor) -> bool:
    """One pass with no temporary (isfinite makes a mask the size of the hidden states): NaN
    carries through min and max, an infinity shows in one of them."""
    low, high = torch.aminmax(tensor)
    return math.isfinite(float(low)) and math.isfinite(float(high))


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
