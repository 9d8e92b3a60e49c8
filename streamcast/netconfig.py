"""The network's shape, apart from the network: what a model file records and what every server of
it reads, importable without torch (the numpy server, `info`, the stream's start-up)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

CELLS = ("rnn", "rnn-relu", "lstm", "gru", "segrnn")
STEP_CELLS = CELLS[:4]  # recurrent over the steps; segrnn recurs over the window's segments (segments.py)
HEAD_SCALES = ("global", "window")
LAG_INPUTS = ("none", "season", "smoothed")
AR_STARTS = ("naive", "ridge")  # where the highway started (streamcast.highway)
WINDOW_SCALE_FLOOR = 1e-5
# Fields added after model files and stream states were first written, with their defaults: left
# out where at their default, so that older models read, and fingerprint, as they always did.
LATER_FIELDS = {"net_window": 0, "segment": 0}


@dataclass(frozen=True)
class ModelConfig:
    """The shape of the network; stored in the model file so that loading rebuilds it exactly."""

    input_size: int
    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    horizon: int = 24
    quantiles: tuple[float, ...] = field(default=())
    conv: int = 0
    ar: int = 0
    season: int = 1
    # Inputs known in advance (features.FeatureSpec.known_inputs): how many, and the input column
    # where the first one's `horizon` columns start.
    known: int = 0
    known_at: int = 0
    head_scale: str = "global"
    lag_inputs: str = "none"
    ar_start: str = "naive"
    # How many of the window's newest values the network reads (the head and the lag inputs); 0:
    # all `ar`. The highway reads the whole window: averaged over several lengths it wants a longer
    # one than the network does (`streamcast.highway.highway_windows`).
    net_window: int = 0
    # A segrnn member's segment length in steps (a season where the window holds two; `segment_length`).
    segment: int = 0

    def __post_init__(self) -> None:
        if self.cell == "segrnn" and not 0 < self.segment <= self.ar:
            raise ValueError(f"a segrnn cell needs a window (ar) and a segment within it, not {self.segment}")
        if self.cell == "segrnn" and self.conv > 1:
            raise ValueError("a segrnn cell reads the window alone: it takes no conv")
        if self.segment and self.cell != "segrnn":
            raise ValueError("only a segrnn cell has segments")
        if not 0 <= self.net_window <= self.ar:
            raise ValueError(f"net_window must be between 0 and ar ({self.ar}), not {self.net_window}")
        if self.ar_start not in AR_STARTS:
            raise ValueError(f"ar_start must be one of {AR_STARTS}, not {self.ar_start!r}")
        if self.lag_inputs not in LAG_INPUTS:
            raise ValueError(f"lag_inputs must be one of {LAG_INPUTS}, not {self.lag_inputs!r}")
        if self.head_scale not in HEAD_SCALES:
            raise ValueError(f"head_scale must be one of {HEAD_SCALES}, not {self.head_scale!r}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, not {self.cell!r}")

    @property
    def outputs_per_step(self) -> int:
        return max(1, len(self.quantiles))

    @property
    def lag_count(self) -> int:
        """Inputs the network adds from its own window (`lag_inputs`): the change since the last
        step and since one season back, and with `smoothed` also since the smoothed level and
        seasonal profile (`model.smoothed_lags`)."""
        if self.net_reads <= 1 or self.lag_inputs == "none":
            return 0
        return 4 if self.lag_inputs == "smoothed" else 2

    @property
    def net_reads(self) -> int:
        """The newest values of the window that the head and the lag inputs read."""
        return self.net_window or self.ar

    @property
    def rnn_input_size(self) -> int:
        return self.input_size + self.lag_count


COMBINES = ("mean", "median")


def without_defaults(fields: dict, defaults: dict) -> dict:
    """`fields` less those at their value in `defaults`: what a file written before they existed
    holds, so that it reads (and fingerprints) as it always did."""
    return {k: v for k, v in fields.items() if k not in defaults or v != defaults[k]}


def recorded_fields(config: ModelConfig) -> dict:
    """The config's fields as stream-state fingerprints hash them (`LATER_FIELDS` left out at their
    defaults); model files also leave out the known-input fields (`modelfile._KNOWN_MODEL`)."""
    return without_defaults(asdict(config), LATER_FIELDS)


def member_weights(weights, members: int) -> tuple[float, ...] | None:
    """An ensemble's weights for its mean, checked: one per member, each in [0, 1], summing to 1
    (None: all equal, as every file before weights were fitted)."""
    if weights is None:
        return None
    weights = tuple(float(w) for w in weights)
    if len(weights) != members or not all(0 <= w <= 1 for w in weights) or abs(sum(weights) - 1) > 1e-6:
        raise ValueError(f"an ensemble of {members} members takes {members} weights in [0, 1] summing to 1")
    return weights


def segment_length(cell: str, ar: int, season: int) -> int:
    """A segrnn member's segment: a season, as SegRNN cuts ETTh1 into days, where the window holds
    two of them; otherwise a quarter of the window. Other cells have none (0)."""
    if cell != "segrnn":
        return 0
    if season > 1 and 2 * season <= ar:
        return season
    return max(1, ar // 4)
