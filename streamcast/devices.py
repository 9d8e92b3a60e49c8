"""Which device torch computes on: the one rule behind every command's `--device`.

`auto` takes a CUDA GPU when torch sees one and the CPU otherwise. Apple's `mps` is used only when
asked for: it is a GPU, but nobody has measured streamcast's small recurrent steps on it. Files are
device-free: weights and states are written from the CPU and read to the CPU, then moved, so a model
trained on a GPU serves on a laptop and the other way round.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from streamcast.errors import UsageError

if TYPE_CHECKING:
    import torch

DEVICES = "auto, cpu, cuda, cuda:N or mps"
_NAME = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def resolve_device(name: str = "auto") -> torch.device:
    """`--device NAME` -> the torch device, or a usage error saying what this machine has instead.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    text = str(name).strip().lower()
    if not _NAME.fullmatch(text):
        raise UsageError(f"--device {name!r} is not a device: use {DEVICES}")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(text.split(":")[1]) if ":" in text else 0
        if count == 0:
            raise UsageError(f"--device {text}: torch sees no CUDA GPU on this machine; use --device cpu")
        if index >= count:
            raise UsageError(
                f"--device {text}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
    if text == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: torch sees no Apple GPU (MPS) on this machine; use --device cpu")
    return torch.device(text)


def device_name(device: torch.device) -> str:
    """How a model file records the device: `cpu`, `cuda:0`, `mps`, with the GPU's name when known."""
    import torch

    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
