"""Online learning for `stream --learn`: the model keeps training on the stream, so it follows drift.

Once the `horizon` true values after a tick have arrived, that tick's forecast can be scored. Each
series keeps the inputs since its learning anchor and the hidden state at that anchor; when a window
of `window` ticks plus their `horizon` targets is complete, one truncated-BPTT step runs over the
window from the anchor state, the state is carried on detached (exactly as `fit` carries it from
chunk to chunk), and the anchor moves `window` ticks on. All series ready at an update share one
batched step; updates happen every `every` observations, counted on the stream's own clock, so
the result does not depend on how the input was cut into micro-batches.

The stream keeps its states and checkpoints in numpy (`streamcast.stream.state`); the learner is
torch inside, and converts where states and tensors cross into it and out of it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from streamcast.forecaster import Forecaster
from streamcast.losses import forecast_loss
from streamcast.model import Network, State, concat_states, detach_state, select_state
from streamcast.stream.config import LearnConfig

if TYPE_CHECKING:
    from streamcast.stream.state import Hidden


class OnlineLearner:
    """A training copy of the network, its optimizer, and each series' window since its anchor."""

    def __init__(self, net: Network, loss: str, config: LearnConfig) -> None:
        self.config = config
        self.loss = loss
        self.net = copy.deepcopy(net).train()
        self.serving = copy.deepcopy(net).eval()  # what the stream forecasts with; synced after updates
        self.serving.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.anchor: dict[int, State] = {}  # series -> the state before its first buffered input
        self.buffer: dict[int, np.ndarray] = {}  # series -> (T, F) inputs since the anchor
        self.steps = 0

    def observe(
        self, series: list[int], fresh: list[bool], initial: Hidden, inputs: np.ndarray, offsets: np.ndarray
    ) -> None:
        """Record the inputs each run fed the network; a fresh run (new or reset series) re-anchors."""
        initial = _torch_state(initial)
        for r, s in enumerate(series):
            rows = inputs[offsets[r] : offsets[r + 1]]
            if fresh[r] or s not in self.anchor:
                self.anchor[s] = tuple(p.clone() for p in select_state(initial, slice(r, r + 1)))
                self.buffer[s] = rows.copy()
            else:
                self.buffer[s] = np.concatenate([self.buffer[s], rows])

    def restart(self, series: list[int], states: Hidden) -> None:
        """Drop what `series` buffered and re-anchor them at `states` (one row each): what came
        before is never trained on (`stream --watch` keeps anomalies from teaching the model)."""
        states = _torch_state(states)
        width = self.net.config.input_size
        for j, s in enumerate(series):
            self.anchor[s] = tuple(p.clone() for p in select_state(states, slice(j, j + 1)))
            self.buffer[s] = np.zeros((0, width), np.float32)

    def renumber(self, rows: dict[int, int]) -> None:
        """Series moved to new rows (`rows`: old -> new); those not in it were evicted."""
        self.anchor = {rows[s]: v for s, v in self.anchor.items() if s in rows}
        self.buffer = {rows[s]: v for s, v in self.buffer.items() if s in rows}

    @torch.enable_grad()
    def update(self) -> int:
        """Train on every complete window; returns the optimizer steps taken."""
        window, horizon = self.config.window, self.net.config.horizon
        params = [p for p in self.net.parameters() if p.requires_grad]
        taken = 0
        for lr_group in self.optimizer.param_groups:
            lr_group["lr"] = self.config.lr
        while True:
            ready = [s for s, rows in self.buffer.items() if len(rows) >= window + horizon]
            if not ready:
                break
            x = torch.from_numpy(np.stack([self.buffer[s][: window + horizon] for s in ready]))  # (B, W+H, F)
            # (B, W, N, H, Q): every member of an ensemble learns from its own forecast, not the median.
            y, state = self.net.member_forward(x[:, :window], concat_states([self.anchor[s] for s in ready]))
            targets = x[:, 1:, 0].unfold(1, horizon, 1)[:, :window]  # (B, W, H): the next H values
            mask = torch.ones(len(ready), window, dtype=torch.bool)
            # Summed over members, so that each member takes the step it would take alone.
            members = y.shape[-3]
            loss = (
                forecast_loss(y, targets.unsqueeze(-2), mask, self.loss, self.net.config.quantiles) * members
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.clip))
            if math.isfinite(norm) and math.isfinite(loss.item()):
                self.optimizer.step()
                taken += 1
            # Truncated BPTT: the state's values carry on to the next window, its gradient does not.
            state = detach_state(state)
            for j, s in enumerate(ready):
                self.anchor[s] = select_state(state, slice(j, j + 1))
                self.buffer[s] = self.buffer[s][window:]
        if taken:
            self.serving.load_state_dict(self.net.state_dict())
            self.steps += taken
        return taken

    def adapted(self, forecaster: Forecaster) -> Forecaster:
        """The forecaster with the weights learnt so far (for --save-model)."""
        info = {**forecaster.info, "online_learning": {**asdict(self.config), "steps": self.steps}}
        net = copy.deepcopy(self.serving)
        return replace(forecaster, net=net, info=info)

    def to_tensors(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything needed to resume learning exactly: weights, Adam moments, windows and anchors,
        as numpy copies for the state file."""
        arrays = {
            f"net.{k}": v.detach().clone().contiguous().numpy() for k, v in self.net.state_dict().items()
        }
        opt = self.optimizer.state_dict()
        for i, entry in opt["state"].items():
            for name, value in entry.items():
                arrays[f"adam.{i}.{name}"] = torch.as_tensor(value).clone().contiguous().numpy()
        series = sorted(self.anchor)
        arrays["series"] = np.array(series, dtype=np.int64)
        arrays["lengths"] = np.array([len(self.buffer[s]) for s in series], dtype=np.int64)
        width = self.net.config.input_size
        rows = [self.buffer[s] for s in series]
        arrays["buffer"] = np.concatenate(rows) if rows else np.zeros((0, width), np.float32)
        if series:
            for j, part in enumerate(concat_states([self.anchor[s] for s in series])):
                arrays[f"anchor.{j}"] = part.contiguous().numpy()
        meta = {
            "config": asdict(self.config),
            "loss": self.loss,
            "steps": self.steps,
            "param_groups": opt["param_groups"],
        }
        return arrays, meta

    @classmethod
    def from_tensors(cls, forecaster: Forecaster, arrays: dict[str, np.ndarray], meta: dict) -> OnlineLearner:
        """The learner a state file holds (`to_tensors`' arrays, views of the file's buffer)."""
        tensors = {name: torch.from_numpy(array) for name, array in arrays.items()}
        learner = cls(forecaster.net, meta["loss"], LearnConfig(**meta["config"]))
        weights = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        learner.net.load_state_dict(weights)
        learner.serving.load_state_dict(weights)
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("adam."):
                _, i, name = key.split(".", 2)
                # a copy: the loaded tensors share the state file's whole buffer, which would live on
                state.setdefault(int(i), {})[name] = value.clone()
        learner.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        series = tensors["series"].tolist()
        ends = np.cumsum([0, *tensors["lengths"].tolist()])
        buffer = tensors["buffer"].numpy()
        parts = [tensors[f"anchor.{j}"] for j in range(len(forecaster.net.init_state(1)))] if series else []
        for j, s in enumerate(series):
            learner.buffer[s] = buffer[ends[j] : ends[j + 1]].copy()
            learner.anchor[s] = tuple(p[j : j + 1].clone() for p in parts)
        learner.steps = meta["steps"]
        return learner


def _torch_state(state: Hidden) -> State:
    """A stream's numpy state as torch tensors sharing its memory (the learner clones what it keeps)."""
    return tuple(torch.from_numpy(np.asarray(part)) for part in state)
