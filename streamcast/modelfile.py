"""The model file: safetensors weights with JSON metadata in its header. Never a pickle.

safetensors stores raw tensors and a JSON header and nothing else, so loading a file from
elsewhere cannot run code. Per-series scales are tensors too, so 100,000 series stay cheap.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.torch import save as save_bytes

import streamcast
from streamcast import safefile
from streamcast.atomic import atomic_write_bytes
from streamcast.errors import DAMAGED_FILE
from streamcast.forecaster import Forecaster, require_torch
from streamcast.model import EnsembleForecaster, RecurrentForecaster
from streamcast.modelheader import (  # noqa: F401 (read_metadata and the constants are public here too)
    BLENDED_FALLBACK,
    DEFAULT_MODEL_PATH,
    FLOORED_SERIES,
    FORMAT,
    FORMAT_VERSION,
    LAST_VALUE_FALLBACK,
    MEAN_OF_MEMBERS,
    NETWORK_WINDOW,
    SEGMENT_MEMBERS,
    metadata,
    read_file,
    read_metadata,
    tensor_bytes,
)
from streamcast.modelparts import damaged, read_parts
from streamcast.netconfig import LATER_FIELDS, without_defaults


def save(forecaster: Forecaster, path: str | Path) -> Path:
    """Write the model atomically: weights and scales as tensors, everything else as JSON."""
    require_torch(forecaster, "save")
    ids = list(forecaster.scaler.loc)
    # Weights leave the device they trained on: a file loads anywhere, to the CPU first.
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in forecaster.net.state_dict().items()}
    tensors["scaler.loc"] = torch.tensor([forecaster.scaler.loc[s] for s in ids], dtype=torch.float64)
    tensors["scaler.scale"] = torch.tensor([forecaster.scaler.scale[s] for s in ids], dtype=torch.float64)
    net = forecaster.net
    meta = {
        "format": FORMAT,
        "format_version": _format_version(forecaster),
        "model_config": without_defaults(asdict(net.config), _KNOWN_MODEL),
        "feature_spec": without_defaults(asdict(forecaster.spec), _KNOWN_SPEC),
        "columns": without_defaults(asdict(forecaster.columns), {"future_covariates": (), "static": ()}),
        "series_ids": ids,
        **(
            {"static_values": {k: list(v) for k, v in forecaster.static_values.items()}}
            if forecaster.static_values
            else {}
        ),
        **({"naive_series": sorted(forecaster.naive_series)} if forecaster.naive_series else {}),
        **({"naive_share": dict(sorted(forecaster.naive_share.items()))} if forecaster.naive_share else {}),
        **({"naive_last": sorted(forecaster.naive_last)} if forecaster.naive_last else {}),
        **({"floor_series": sorted(forecaster.floor_series)} if forecaster.floor_series else {}),
        **({"intervals": forecaster.intervals.to_meta()} if forecaster.intervals is not None else {}),
        "info": forecaster.info,
        **(
            {
                "member_configs": [without_defaults(asdict(m.config), _KNOWN_MODEL) for m in net.members],
                "ensemble_combine": net.combine,
                **({"member_weights": list(net.weights)} if net.weights else {}),
            }
            if isinstance(net, EnsembleForecaster)
            else {}
        ),
        "versions": {
            "streamcast": streamcast.__version__,
            "torch": torch.__version__,
            "polars": pl.__version__,
            "python": platform.python_version(),
        },
    }
    # The tensors' bytes do not depend on the header: their hash (read by format 1) is made once;
    # the whole file, header included, is sealed with another, so that a file damaged on disk or
    # in transfer is refused instead of forecasting garbage under renamed series.
    meta["tensors_sha256"] = hashlib.sha256(tensor_bytes(save_bytes(tensors))).hexdigest()
    atomic_write_bytes(path, safefile.write(tensors, meta))
    return Path(path)


# Fields of models with inputs known in advance, left out of files without them so that such a
# file stays what it was before they existed (and loads in a streamcast that predates them).
_KNOWN_SPEC = {
    "future_covariates": (),
    "future_loc": (),
    "future_scale": (),
    "holidays": "",
    "future_steps": 0,
    "static": (),
    "static_levels": (),
    "static_loc": (),
    "static_scale": (),
    "floor": None,
}


_KNOWN_MODEL = {"known": 0, "known_at": 0, **LATER_FIELDS}


def _mean_of_members(net) -> bool:
    return isinstance(net, EnsembleForecaster) and net.combine == "mean"


def _format_version(forecaster: Forecaster) -> int:
    """The oldest version whose readers serve this file as written: older readers refuse it."""
    net = forecaster.net
    configs = [m.config for m in getattr(net, "members", [net])]
    if any(c.cell == "segrnn" for c in configs) or getattr(net, "weights", None):
        return SEGMENT_MEMBERS  # segrnn members, or a weighted mean (`member_weights`), came together
    if any(c.net_window for c in configs):
        return NETWORK_WINDOW
    if forecaster.naive_last:
        return LAST_VALUE_FALLBACK
    if forecaster.floor_series:
        return FLOORED_SERIES
    if forecaster.naive_share:
        return BLENDED_FALLBACK
    return MEAN_OF_MEMBERS if _mean_of_members(forecaster.net) else MEAN_OF_MEMBERS - 1


def load(path: str | Path) -> Forecaster:
    """Read a model file written by `save`; a missing, corrupt or foreign file is a ModelFileError."""
    parts = read_parts(path)
    configs = parts.configs

    def build() -> torch.nn.Module:
        if len(configs) == 1:
            return RecurrentForecaster(configs[0])
        return EnsembleForecaster(configs, parts.combine, parts.mean_weights)

    try:
        weights = {k: torch.from_numpy(np.array(v)) for k, v in parts.weights.items()}
        _check_shapes(build, weights)
        net = build()
        net.load_state_dict(weights)
    except DAMAGED_FILE as exc:
        raise damaged(path, exc) from None
    return parts.forecaster(net.eval())


def _check_shapes(build: Callable[[], torch.nn.Module], weights: dict[str, torch.Tensor]) -> None:
    """The weights must be those of the network the header describes (`build` makes it): checked on
    the meta device, before any memory is allocated for a network a crafted header made enormous."""
    try:
        with torch.device("meta"):
            expected = {k: v.shape for k, v in build().state_dict().items()}
    except NotImplementedError:  # a network that cannot be laid out without data: load_state_dict checks
        return
    if expected != {k: v.shape for k, v in weights.items()}:
        raise ValueError("the weights do not fit the network the header describes")
