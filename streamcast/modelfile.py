"""The model file: safetensors weights with JSON metadata in its header. Never a pickle.

safetensors stores raw tensors and a JSON header and nothing else, so loading a file from
elsewhere cannot run code. Per-series scales are tensors too, so 100,000 series stay cheap.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import safetensors
import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

import streamcast
from streamcast.atomic import atomic_write_bytes
from streamcast.errors import DAMAGED_FILE, ModelFileError, first_line
from streamcast.features import FeatureSpec, Scaler
from streamcast.forecaster import Forecaster
from streamcast.model import EnsembleForecaster, ModelConfig, RecurrentForecaster
from streamcast.reading import Columns

FORMAT = "streamcast-model"
# 2: ensembles (member_configs) and target transforms; a reader of version 1 refuses these files
# with "upgrade streamcast" rather than misreading them. Version 1 files still load.
FORMAT_VERSION = 2
DEFAULT_MODEL_PATH = "model.streamcast"


def save(forecaster: Forecaster, path: str | Path) -> Path:
    """Write the model atomically: weights and scales as tensors, everything else as JSON."""
    ids = list(forecaster.scaler.loc)
    tensors = {f"net.{k}": v.detach().contiguous() for k, v in forecaster.net.state_dict().items()}
    tensors["scaler.loc"] = torch.tensor([forecaster.scaler.loc[s] for s in ids], dtype=torch.float64)
    tensors["scaler.scale"] = torch.tensor([forecaster.scaler.scale[s] for s in ids], dtype=torch.float64)
    net = forecaster.net
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": asdict(net.config),
        "feature_spec": asdict(forecaster.spec),
        "columns": asdict(forecaster.columns),
        "series_ids": ids,
        "info": forecaster.info,
        **(
            {"member_configs": [asdict(m.config) for m in net.members]}
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
    # The tensors' bytes do not depend on the header: hash them once, then write them with the hash,
    # so that a file damaged on disk or in transfer is refused instead of forecasting garbage.
    unsigned = save_bytes(tensors, metadata={"streamcast": json.dumps(meta, sort_keys=True)})
    meta["tensors_sha256"] = hashlib.sha256(_tensor_bytes(unsigned)).hexdigest()
    data = save_bytes(tensors, metadata={"streamcast": json.dumps(meta, sort_keys=True)})
    atomic_write_bytes(path, data)
    return Path(path)


def _tensor_bytes(raw: bytes) -> bytes:
    """What follows the header: the tensors' data."""
    size = int(np.frombuffer(raw[:8], dtype="<u8")[0])
    return raw[8 + size :]


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata alone, without building the network (for `streamcast info`)."""
    return _metadata(_read(path), path)


def load(path: str | Path) -> Forecaster:
    """Read a model file written by `save`; a missing, corrupt or foreign file is a ModelFileError."""
    raw = _read(path)
    meta = _metadata(raw, path)
    try:
        tensors = load_bytes(raw)
        configs = [_model_config(c) for c in meta.get("member_configs") or [meta["model_config"]]]
        spec_fields = meta["feature_spec"]
        spec = FeatureSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec_fields.items()})
        columns = Columns(**{**meta["columns"], "covariates": tuple(meta["columns"]["covariates"])})
        net = RecurrentForecaster(configs[0]) if len(configs) == 1 else EnsembleForecaster(configs)
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        ids = meta["series_ids"]
        loc = tensors["scaler.loc"].numpy().tolist()
        scale = tensors["scaler.scale"].numpy().tolist()
        scaler = Scaler(dict(zip(ids, loc, strict=True)), dict(zip(ids, scale, strict=True)))
        info = dict(meta["info"])
    except (*DAMAGED_FILE, safetensors.SafetensorError) as exc:
        reason = first_line(exc)
        raise ModelFileError(
            f"{path}: the model file is damaged or from an incompatible version ({reason})"
        ) from None
    net.eval()
    return Forecaster(net=net, spec=spec, scaler=scaler, columns=columns, info=info)


def _model_config(fields: dict) -> ModelConfig:
    return ModelConfig(**{**fields, "quantiles": tuple(fields["quantiles"])})


def _read(path: str | Path) -> bytes:
    p = Path(path)
    if p.is_dir():
        raise ModelFileError(f"{str(p)!r} is a folder, not a model or state file: give the file's path")
    if not p.is_file():
        hint = (
            " (run `streamcast fit DATA` first, or pass -m/--model PATH)"
            if p.name == DEFAULT_MODEL_PATH
            else ""
        )
        raise ModelFileError(f"model file {str(p)!r} not found{hint}")
    return p.read_bytes()


def _metadata(raw: bytes, path: str | Path) -> dict:
    """Parse the safetensors header by hand: a foreign file must fail with a clear message."""
    problem = f"{path}: not a streamcast model file"
    if len(raw) < 8:
        raise ModelFileError(f"{problem} (too short)")
    size = int(np.frombuffer(raw[:8], dtype="<u8")[0])
    if size > len(raw) - 8:
        raise ModelFileError(f"{problem} (bad header)")
    try:
        header = json.loads(raw[8 : 8 + size])
        meta = json.loads(header["__metadata__"]["streamcast"])
    except (ValueError, KeyError, TypeError):
        raise ModelFileError(f"{problem} (no streamcast metadata)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(problem)
    version = meta.get("format_version", 0)
    if not isinstance(version, int):
        raise ModelFileError(f"{problem} (format version {version!r})")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written by a newer streamcast (format {version}); upgrade streamcast to load it"
        )
    expected = meta.get("tensors_sha256")  # files from before the checksum have none
    if expected is not None and hashlib.sha256(_tensor_bytes(raw)).hexdigest() != expected:
        raise ModelFileError(
            f"{path}: the model file is damaged (its weights do not match their checksum); "
            "copy it again or fit a new one"
        )
    return meta
