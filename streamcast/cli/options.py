"""Options and helpers every command shares, so that the same flag means the same thing everywhere."""

from __future__ import annotations

import click

from streamcast.column_names import ID_NAMES, TARGET_NAMES, TIME_NAMES
from streamcast.errors import UsageError
from streamcast.glitches import GLITCH_RATIO, recorded_ratio
from streamcast.modelheader import DEFAULT_MODEL_PATH
from streamcast.threads import ENV, check_threads, default_threads

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def data_options(f):
    """Column options shared by every command that reads series."""
    f = click.option(
        "--time-zone",
        metavar="ZONE",
        expose_value=False,
        callback=lambda ctx, param, value: ctx.meta.__setitem__("time_zone", value),
        help="Read the timestamps in this IANA zone (e.g. Europe/Berlin): zoned ones and UTC offsets "
        "are converted, naive ones are its local times [default: the data's own; a model's data: "
        "the zone it was trained in].",
    )(f)
    f = click.option(
        "--long-gap",
        type=click.IntRange(min=1),
        default=24,
        show_default=True,
        metavar="STEPS",
        expose_value=False,
        # Read where the data is read (read_for_model, fit): it only sets when a note is due.
        callback=lambda ctx, param, value: ctx.meta.__setitem__("long_gap", value),
        help="Gaps filled by interpolation that are longer than this get a note each.",
    )(f)
    f = click.option(
        "--glitch-ratio",
        type=click.FloatRange(min=0),
        metavar="K",
        expose_value=False,
        callback=lambda ctx, param, value: ctx.meta.__setitem__("glitch_ratio", value),
        help="A value more than K typical deviations outside its series' usual range is a glitch "
        f"(a sentinel such as -9999, a corrupted reading), read as missing and named in a note; 0 = off "
        f"[default: {GLITCH_RATIO:g}; a model's data: the ratio it was fitted with].",
    )(f)
    f = click.option(
        "--covariate",
        "covariates",
        multiple=True,
        metavar="COL",
        help="Numeric covariate column (repeatable).",
    )(f)
    f = click.option("--target", metavar="COL", help=f"Value column [default: {_names(TARGET_NAMES)}].")(f)
    f = click.option(
        "--time-col",
        metavar="COL",
        help=f"Timestamp column [default: {_names(TIME_NAMES)}, or the one column of timestamps].",
    )(f)
    f = click.option(
        "--id-col",
        metavar="COL",
        help=f"Series id column [default: {_names(ID_NAMES)}, or the one column that tells apart "
        "the rows of a timestamp].",
    )(f)
    return f


def _names(names) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1]


def threads_option(f):
    """`--threads N` on every command that runs torch; the rule itself lives in streamcast.threads."""
    return click.option(
        "--threads",
        type=int,
        metavar="N",
        callback=_threads,
        help=f"Torch threads [default: 1, or ${ENV}]. One, because these recurrent steps are small: "
        "on 2 shared cores a second thread made every command 3-27x slower, spin-waiting while "
        "another process holds a core (see README, Benchmarks).",
    )(f)


def device_option(f):
    """`--device` on every command that runs the network; the rule lives in streamcast.devices."""
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        metavar="auto|cpu|cuda|cuda:N|mps",
        callback=_device,
        help="Where the network runs: auto takes a CUDA GPU when torch sees one, else the CPU. "
        "Model and state files load on any device, whichever wrote them.",
    )(f)


def _device(ctx: click.Context, param: click.Parameter, value: str):
    """The torch device, resolved as the options are read: an absent GPU is a usage error at once."""
    from streamcast.devices import resolve_device

    return resolve_device(value)


def serve_device_option(f):
    """`stream`'s `--device`: the CPU by default, where the numpy mirror of the network serves
    without loading torch; any other device as every command's (`device_option`)."""
    return click.option(
        "--device",
        default="cpu",
        show_default=True,
        metavar="cpu|auto|cuda|cuda:N|mps",
        callback=_serve_device,
        help="Where the network runs: cpu serves it with numpy, without loading torch (a first forecast "
        "within a second of start); auto, cuda, cuda:N and mps serve it with torch (auto: a CUDA GPU "
        "when torch sees one). --learn trains with torch on the CPU.",
    )(f)


def _serve_device(ctx: click.Context, param: click.Parameter, value: str):
    """None for the CPU (numpy serves, torch is not loaded to check for a GPU), else the torch device."""
    if str(value).strip().lower() == "cpu":
        return None
    return _device(ctx, param, value)


def _threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int:
    return default_threads() if value is None else check_threads(value)


def model_option(f):
    return click.option(
        "-m",
        "--model",
        "model_path",
        default=DEFAULT_MODEL_PATH,
        show_default=True,
        type=click.Path(dir_okay=False),
        help="Model file written by `streamcast fit`.",
    )(f)


def fit_options(f):
    """The training options, shared by `fit` and `backtest`; they mirror FitConfig one to one."""
    options = [
        click.option(
            "--cell",
            type=click.Choice(["rnn", "rnn-relu", "lstm", "gru", "segrnn"]),
            default="lstm",
            show_default=True,
            help="Recurrent cell (lstm: on CPU twice as fast as gru, as accurate on M4 Hourly; segrnn: a GRU over the --ar window's segments, SegRNN).",
        ),
        click.option(
            "--hidden", "hidden_size", type=int, default=64, show_default=True, help="Hidden state size."
        ),
        click.option(
            "--layers",
            "num_layers",
            type=int,
            default=1,
            show_default=True,
            help="Stacked recurrent layers.",
        ),
        click.option(
            "--dropout",
            type=float,
            default=0.0,
            show_default=True,
            help="Dropout between layers and before the head.",
        ),
        click.option(
            "--conv",
            type=int,
            default=0,
            show_default=True,
            help="Causal 1-D convolution kernel over the inputs (0 = off).",
        ),
        click.option(
            "--ar",
            type=int,
            help="The head sees the last N values, with a linear highway over them (see --ar-start; 0 = off) [default: a week hourly (168), 336 steps for finer data; 28 daily].",
        ),
        click.option(
            "--head-scale",
            type=click.Choice(["auto", "global", "window"]),
            default="auto",
            show_default=True,
            help="window: the head's inputs and corrections are measured in the spread of its --ar window, so a smooth series gets corrections as fine as its own moves; global: in the series' scale; auto: window when the values are modelled in logs.",
        ),
        click.option(
            "--ar-start",
            type=click.Choice(["auto", "naive", "ridge"]),
            default="auto",
            show_default=True,
            help="Where the --ar highway starts. naive: seasonal naive, then trained; ridge: the least-squares forecast from the window (as NLinear fits it), kept fixed while the network learns corrections; auto: whichever scores better on the validation part, each series in units of its seasonal naive error.",
        ),
        click.option(
            "--naive-fallback",
            type=float,
            default=1.5,
            show_default=True,
            help="After training, a series whose validation error is over this many times naive's is served naive, and one over 0.8 times it a blend (recorded in the model file; 0 = off).",
        ),
        click.option(
            "--fallback-to",
            type=click.Choice(["best", "seasonal"]),
            default="best",
            show_default=True,
            help="The naive of --naive-fallback. seasonal: seasonal naive; best: per series, seasonal naive or the last value, whichever did better on the validation part (short or seasonless data).",
        ),
        click.option(
            "--naive-share",
            type=click.Choice(["fitted", "ratio"]),
            default="fitted",
            show_default=True,
            help="How much of its naive a series is served. ratio: by --naive-fallback alone; fitted: also the blend of network and naive that did best on the validation part, where that share is larger (shrunk as if 8 horizons of validation had said none: on a short validation part it stays small).",
        ),
        click.option(
            "--lag-inputs",
            type=click.Choice(["auto", "none", "season", "smoothed"]),
            default="auto",
            show_default=True,
            help="season: the recurrent cell also sees each step's change since the step before and since one season back, in units of its --ar window's spread (read from the carried window). smoothed: also the change since an exponentially smoothed level and since its phase's smoothed seasonal profile (ES-RNN's level and seasonality), both smoothing rates learned. auto: smoothed for data in logs (--transform), season otherwise.",
        ),
        click.option(
            "--horizon",
            type=int,
            help="Steps ahead forecast at every step [default: by frequency, and said: a day of hourly "
            "to 15-minute data, an hour of finer, 14 daily, 13 weekly, 18 monthly, 8 quarterly, 6 yearly; "
            "24 steps without timestamps].",
        ),
        click.option(
            "--quantiles",
            metavar="Q,Q,..",
            help="Also learn these quantiles (pinball loss), e.g. 0.1,0.5,0.9.",
        ),
        click.option(
            "--intervals",
            metavar="Q,Q|none",
            default="0.1,0.9",
            show_default=True,
            callback=lambda _ctx, _param, text: parse_levels(text),
            help="Without --quantiles: the levels of the interval calibrated around the point "
            "forecast on the validation part (split conformal; the point is unchanged); none = off.",
        ),
        click.option(
            "--interval-widen",
            type=float,
            default=1.15,
            show_default=True,
            help="The calibrated interval's distances from the point, times this: errors measured "
            "on the validation part the model was chosen on promise too little (1 = as measured).",
        ),
        click.option(
            "--bptt", type=int, default=48, show_default=True, help="Truncated BPTT chunk length in steps."
        ),
        click.option(
            "--batch-size",
            type=int,
            default=32,
            show_default=True,
            help="Lanes trained in parallel (fewer on small data).",
        ),
        click.option(
            "--epochs",
            type=int,
            default=30,
            show_default=True,
            help="Most epochs (early stopping may end sooner).",
        ),
        click.option("--lr", type=float, default=3e-3, show_default=True, help="Learning rate."),
        click.option(
            "--optimizer",
            type=click.Choice(["adam", "adamw", "rmsprop", "sgd"]),
            default="adam",
            show_default=True,
        ),
        click.option("--weight-decay", type=float, default=0.0, show_default=True),
        click.option(
            "--lr-schedule",
            type=click.Choice(["plateau", "cosine", "warmup-cosine", "none"]),
            default="plateau",
            show_default=True,
        ),
        click.option(
            "--clip",
            type=float,
            default=1.0,
            show_default=True,
            help="Clip the global gradient norm (0 = off).",
        ),
        click.option(
            "--clip-value",
            type=float,
            default=0.0,
            show_default=True,
            help="Clip each gradient value (0 = off).",
        ),
        click.option(
            "--loss",
            type=click.Choice(["auto", "mae", "mse", "huber"]),
            default="auto",
            show_default=True,
            help="Training loss; auto: mae on log-transformed data, mse on data in its own units.",
        ),
        click.option(
            "--scaling",
            type=click.Choice(["auto", "mean", "std", "spread"]),
            default="auto",
            show_default=True,
            help="Per-series scale: mean absolute value, standard deviation, or twice it (spread); "
            "auto: spread for data in its own units (the same forecasts in any units), mean in logs.",
        ),
        click.option(
            "--transform",
            type=click.Choice(["auto", "log", "none"]),
            default="auto",
            show_default=True,
            help="Model the log of the values (log), or the values (none); auto: log when every value is positive and the series' spread grows with their level (Guerrero's Box-Cox test). Forecasts come back in the data's units.",
        ),
        click.option(
            "--series-weight",
            type=click.Choice(["auto", "equal", "mase", "soft-mase"]),
            default="auto",
            show_default=True,
            help="mase: weigh each series' loss by 1 / its in-sample seasonal naive error (the loss becomes MASE; weights kept within 10x of their median); soft-mase: the fourth root of those weights; auto: soft-mase on log-transformed data, equal on data in its own units.",
        ),
        click.option(
            "--ensemble",
            type=int,
            default=3,
            show_default=True,
            help="Train N members (the first under --seed, each other under a seed of its own) and forecast their mean (see --ensemble-combine); every command serves the one file. Three cut M4 Hourly's validation MASE by a tenth against one; 1 trains a single network.",
        ),
        click.option(
            "--ensemble-combine",
            type=click.Choice(["mean", "median"]),
            default="mean",
            show_default=True,
            help="How the members' forecasts (and quantiles) become one: mean, or median (one odd member cannot drag it).",
        ),
        click.option(
            "--ensemble-cells",
            metavar="CELL,CELL,..",
            callback=lambda ctx, param, value: tuple(c.strip() for c in value.split(",")) if value else (),
            help="Cells the members take in turn, e.g. lstm,gru [default: --cell, then segrnn for two members of every three where the data stays in its own units and has no covariates, static or known-ahead inputs; --cell for all otherwise].",
        ),
        click.option(
            "--segment-stride",
            type=int,
            default=4,
            show_default=True,
            help="Train each segrnn member on every Nth step, shifted by one each epoch (its window still walks "
            "every step); other cells train on every step. 4 fit ETTh1 2.6x faster than 1, and as well.",
        ),
        click.option(
            "--segment-batches",
            type=click.Choice(["mixed", "lanes", "random"]),
            default="mixed",
            show_default=True,
            help="How segrnn members draw their training windows: lanes walked in chunks, as other cells "
            "train; random, each batch from all over the data; mixed, the segrnn members in turn (the first "
            "on lanes, the second random). Mixed kept most of random's gain on ETT's seven columns at a "
            "quarter of its cost on a single series.",
        ),
        click.option(
            "--val-size",
            type=int,
            help="Validation steps at the end of each series [default: about 40,000 points over all series, "
            "at least the horizon, at most a fifth of the shortest series beyond its first 1,000 points].",
        ),
        click.option(
            "--patience",
            type=int,
            default=10,
            show_default=True,
            help="Epochs without improvement before stopping.",
        ),
        click.option(
            "--average-epochs",
            type=int,
            default=3,
            show_default=True,
            help="Each member's weights become the mean of its K best epochs' weights, where that scores "
            "better on the validation part than the best epoch alone (M4 Hourly's MASE 0.845 -> 0.835 "
            "over 3 seeds); 1: the best epoch alone.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        *known_options(),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def fit_config(options: dict, **more):
    """The FitConfig of fit's options; without --horizon, none until the data's frequency is
    known (`with_horizon`), so that --val-size is checked against the horizon taken."""
    from streamcast.training import FitConfig

    return FitConfig(**options, **more)


def with_horizon(config, given: int | None, freq: str, quiet: bool):
    """The config with the horizon the data's frequency suggests when --horizon was not given."""
    import dataclasses

    from streamcast.features import default_horizon

    if given is not None:
        return config
    steps, words = default_horizon(freq)
    notes([f"--horizon not given: forecasting {steps} steps ({words}); pass --horizon N to choose"], quiet)
    return dataclasses.replace(config, horizon=steps)


def known_options() -> list:
    """Inputs known in advance (issue 14): `forecast` and `stream` then need their future values."""
    return [
        click.option(
            "--future-covariate",
            "future_covariates",
            multiple=True,
            metavar="COL",
            help="Numeric column known in advance, e.g. a weather forecast (repeatable): at each step "
            "the network sees its next --horizon values; `forecast` reads them from rows after the "
            "last observation (target empty).",
        ),
        click.option(
            "--holidays",
            metavar="COUNTRY",
            default="",
            help="Holiday flags of the next --horizon steps as inputs, from the holidays package "
            "(e.g. DE, US, GB-ENG; pip install 'streamcast[holidays]').",
        ),
        click.option(
            "--static",
            multiple=True,
            metavar="COL",
            help="Column with one value per series, e.g. region or size (repeatable): text one-hot, "
            "numbers scaled, as inputs at every step.",
        ),
    ]


def parse_floats(
    text: str | None, option: str = "--quantiles", example: str = "0.1,0.5,0.9"
) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(
            f"{option} takes numbers separated by commas, e.g. {example}; got {text!r}"
        ) from None


def parse_levels(text: str) -> tuple[float, ...]:
    """`--intervals`: levels separated by commas, or none."""
    if text.strip().lower() in ("none", "off"):
        return ()
    return parse_floats(text, "--intervals", "0.1,0.9, or none")


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def notes(notes, quiet: bool) -> None:
    if not quiet:
        for note in notes:
            click.echo(f"note: {note}", err=True)


def long_gap() -> int:
    """The --long-gap of the running command."""
    return click.get_current_context().meta.get("long_gap", 24)


def glitch_ratio(forecaster=None) -> float:
    """The --glitch-ratio of the running command; where none was given, the one `forecaster`'s
    data was read with (the same values read as missing as in training), else the default."""
    given = click.get_current_context().meta.get("glitch_ratio")
    if given is not None:
        return given
    return recorded_ratio(forecaster.info) if forecaster is not None else GLITCH_RATIO


def time_zone() -> str | None:
    """The --time-zone of the running command."""
    return click.get_current_context().meta.get("time_zone")


def read_for_model(forecaster, data, id_col, time_col, target, covariates, quiet: bool = False):
    """Read DATA, or the model's own data source, with the model's column mapping and time zone
    unless overridden; warn when the data's zone is not the model's."""
    from streamcast.reading import read_series

    series = _with_model_columns(read_series, forecaster, data, id_col, time_col, target, covariates)
    series, moved = forecaster.in_model_zone(series)
    if moved and not quiet:
        warn(moved)
    return series


def reader_for_model(forecaster, data, id_col, time_col, target, covariates):
    """`read_for_model` for reading in batches of series: a BatchReader that has listed the ids
    (the batches it reads are put in the model's zone as they are forecast)."""
    from streamcast.batches import BatchReader

    def open_reader(source, **options):
        reader = BatchReader(source, **options)
        reader.ids  # noqa: B018 (read now, so that a column is named as the model's if it is missing)
        return reader

    return _with_model_columns(open_reader, forecaster, data, id_col, time_col, target, covariates)


def _with_model_columns(read, forecaster, data, id_col, time_col, target, covariates):
    source = data or forecaster.info.get("data", {}).get("source")
    if not source or (not data and source in ("-", "<frame>")):
        raise UsageError("this model records no data file to re-read: pass DATA (a path, or - for stdin)")
    cols = forecaster.columns
    try:
        return read(
            source,
            id_col=id_col or cols.id,
            time_col=time_col or cols.time,
            target=target or cols.target,
            covariates=covariates or cols.covariates,
            max_gap=long_gap(),
            glitch_ratio=glitch_ratio(forecaster),
            time_zone=time_zone() or forecaster.time_zone,
            future_covariates=cols.future_covariates,
            static=cols.static,
        )
    except UsageError as exc:
        # A column the user did not name came from the model: say so, not "from --covariate".
        message = str(exc)
        for flag, given in (("--id-col", id_col), ("--time-col", time_col), ("--target", target)):
            if not given:
                message = message.replace(f"(from {flag})", f"(the model's {flag[2:]} column)")
        if not covariates:
            message = message.replace("(from --covariate)", "(a covariate of the model)")
        raise UsageError(message) from None
