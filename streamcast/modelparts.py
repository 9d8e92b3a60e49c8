"""A model file read into everything but the network, without torch: the networks' shapes and
weights (numpy arrays), the scaler, features, columns, fallback and interval.

`modelfile.load` builds torch's network from them, `load_numpy` the numpy mirror that `stream`
serves without importing torch (about 1.3 s of a start-up that aims at a first forecast within
1 s). Both read the same checks, so a file is refused alike whichever serves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
from safetensors.numpy import load as load_bytes

from streamcast.errors import DAMAGED_FILE, ModelFileError, first_line
from streamcast.features import FeatureSpec, Scaler
from streamcast.forecaster import Forecaster
from streamcast.intervals import Intervals
from streamcast.modelheader import metadata, read_file
from streamcast.netconfig import ModelConfig
from streamcast.reading import Columns


@dataclass(frozen=True)
class ModelParts:
    """A model file's contents: `fields` are the Forecaster's own, all but its network."""

    configs: list[ModelConfig]
    combine: str | None  # an ensemble's (None: one network)
    weights: dict[str, np.ndarray]  # the network's, named as its state_dict
    fields: dict[str, Any]
    mean_weights: tuple[float, ...] | None = None  # the members' in their mean (None: equal)

    def forecaster(self, net) -> Forecaster:
        return Forecaster(net=net, **self.fields)


def read_parts(path: str | Path) -> ModelParts:
    """Read and check a model file written by `modelfile.save`; a missing, corrupt or foreign
    file is a ModelFileError."""
    raw = read_file(path)
    meta = metadata(raw, path)
    try:
        tensors = load_bytes(raw)
        configs = [_model_config(c) for c in meta.get("member_configs") or [meta["model_config"]]]
        spec = FeatureSpec(**{k: _tuples(v) for k, v in meta["feature_spec"].items()})
        columns = Columns(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["columns"].items()})
        weights = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        ids = meta["series_ids"]
        for name in ("scaler.loc", "scaler.scale"):
            if tensors[name].dtype != np.float64 or tuple(tensors[name].shape) != (len(ids),):
                raise ValueError(f"tensor {name!r} does not hold one float64 per series")
        loc = tensors["scaler.loc"].tolist()
        scale = tensors["scaler.scale"].tolist()
        if not all(math.isfinite(x) for x in loc) or not all(0 < x < math.inf for x in scale):
            raise ValueError("a series scale is not finite and positive")
        if not all(bool(np.isfinite(v).all()) for v in tensors.values() if v.dtype.kind == "f"):
            raise ValueError("a weight is not finite")
        scaler = Scaler(dict(zip(ids, loc, strict=True)), dict(zip(ids, scale, strict=True)))
        info = dict(meta["info"])
    except (*DAMAGED_FILE, safetensors.SafetensorError) as exc:
        raise damaged(path, exc) from None
    fields = {
        "spec": spec,
        "scaler": scaler,
        "columns": columns,
        "info": info,
        "static_values": {k: tuple(v) for k, v in meta.get("static_values", {}).items()},
        "naive_series": frozenset(meta.get("naive_series", [])),
        "naive_share": {k: float(v) for k, v in meta.get("naive_share", {}).items()},
        "naive_last": frozenset(meta.get("naive_last", [])),
        "floor_series": frozenset(meta.get("floor_series", [])),
        "intervals": Intervals.from_meta(meta["intervals"]) if meta.get("intervals") else None,
    }
    combine = meta.get("ensemble_combine", "median") if len(configs) > 1 else None
    mean_weights = tuple(meta["member_weights"]) if meta.get("member_weights") else None
    return ModelParts(configs, combine, weights, fields, mean_weights)


def load_numpy(path: str | Path) -> Forecaster:
    """The model served by the numpy mirror of its network (`streamcast.numpy_net`): no torch."""
    from streamcast.numpy_ensemble import numpy_network

    parts = read_parts(path)
    try:
        net = numpy_network(parts.configs, parts.weights, parts.combine, parts.mean_weights)
    except DAMAGED_FILE as exc:
        raise damaged(path, exc) from None
    return parts.forecaster(net)


def damaged(path: str | Path, exc: BaseException) -> ModelFileError:
    return ModelFileError(
        f"{path}: the model file is damaged or from an incompatible version ({first_line(exc)})"
    )


def _tuples(value):
    """JSON lists back to the tuples the frozen spec holds (lists of lists: the static levels)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _model_config(fields: dict) -> ModelConfig:
    return ModelConfig(**{**fields, "quantiles": tuple(fields["quantiles"])})
