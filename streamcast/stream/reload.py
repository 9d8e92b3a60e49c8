"""Serving a new model file in a running stream (SIGHUP), keeping every series' carried state.

A model refitted on newer data (a nightly `fit`) with the same shape takes over the hidden states
the old one built up: they are approximate for the new weights, but far closer than zeros, and
no series has to warm up again. Series keep their scales; series first seen from now on take the
new model's. A learner (`--learn`) starts over from the new weights. A model of another shape, or
whose inputs mean something else, is refused and the old one keeps serving.
"""

from __future__ import annotations

from dataclasses import asdict

from streamcast.errors import ModelFileError
from streamcast.forecaster import Forecaster, served_by_numpy
from streamcast.modelparts import load_numpy
from streamcast.stream.state import StreamState, model_fingerprint


def mismatch(old: Forecaster, new: Forecaster) -> str | None:
    """Why `new` cannot take over the states of `old`, or None when it can."""
    old_state = [tuple(p.shape) for p in old.net.init_state(1)]
    new_state = [tuple(p.shape) for p in new.net.init_state(1)]
    if old_state != new_state:
        return f"its state shapes are {_shapes(new_state)}, the stream's {_shapes(old_state)}"
    for name in ("horizon", "quantiles"):
        if getattr(old, name) != getattr(new, name):
            return f"its {name} is {getattr(new, name)}, the stream's {getattr(old, name)}"
    a, b = asdict(old.spec), asdict(new.spec)
    for name in ("freq", "calendar", "covariates", "scaling", "transform"):
        if a[name] != b[name]:
            return f"its {name} is {b[name]!r}, the stream's {a[name]!r}"
    if asdict(old.net.config) | {"dropout": 0} != asdict(new.net.config) | {"dropout": 0}:
        return "its network is built differently"
    return None


def load_like(old: Forecaster, path: str) -> Forecaster:
    """The model file at `path`, served as `old` is: by the numpy mirror, or by torch on its device."""
    if served_by_numpy(old):
        return load_numpy(path)
    from streamcast.modelfile import load

    return load(path).to(next(old.net.parameters()).device)


def adopt(state: StreamState, old: Forecaster, new: Forecaster, source: str) -> None:
    """Make `state` belong to `new`; a ModelFileError (and `state` untouched) when shapes differ."""
    problem = mismatch(old, new)
    if problem is not None:
        raise ModelFileError(f"{source} not reloaded: {problem}; still serving the old model")
    state.fingerprint = model_fingerprint(new)
    state._scaler = new.scaler
    state.learner = None


def _shapes(shapes: list[tuple[int, ...]]) -> str:
    """Per series, without the batch axis: (layers, hidden) for the recurrent parts."""
    return " ".join(str(s[1:]).replace(",)", ")") for s in shapes)
