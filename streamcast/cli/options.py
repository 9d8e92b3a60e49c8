"""Options and helpers every command shares, so that the same flag means the same thing everywhere."""

from __future__ import annotations

import click

from streamcast.errors import UsageError
from streamcast.modelheader import DEFAULT_MODEL_PATH
from streamcast.threads import ENV, check_threads, default_threads

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def data_options(f):
    """Column options shared by every command that reads series."""
    f = click.option(
        "--covariate",
        "covariates",
        multiple=True,
        metavar="COL",
        help="Numeric covariate column (repeatable).",
    )(f)
    f = click.option("--target", metavar="COL", help="Value column (default: y, value or target).")(f)
    f = click.option(
        "--time-col", metavar="COL", help="Timestamp column (default: ds, timestamp, time or date)."
    )(f)
    f = click.option(
        "--id-col",
        metavar="COL",
        help="Series id column (default: unique_id, id, series_id or series).",
    )(f)
    return f


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
            type=click.Choice(["rnn", "rnn-relu", "lstm", "gru"]),
            default="lstm",
            show_default=True,
            help="Recurrent cell (lstm: on CPU twice as fast as gru, as accurate on M4 Hourly).",
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
            help="The head sees the last N values, with a linear highway over them started as seasonal naive (0 = off) [default: a week hourly (168), a day for 15-minute data (96), at most 336 steps; 28 daily].",
        ),
        click.option(
            "--head-scale",
            type=click.Choice(["auto", "global", "window"]),
            default="auto",
            show_default=True,
            help="window: the head's inputs and corrections are measured in the spread of its --ar window, so a smooth series gets corrections as fine as its own moves; global: in the series' scale; auto: window when the values are modelled in logs.",
        ),
        click.option(
            "--horizon", type=int, default=24, show_default=True, help="Steps ahead forecast at every step."
        ),
        click.option(
            "--quantiles",
            metavar="Q,Q,..",
            help="Also learn these quantiles (pinball loss), e.g. 0.1,0.5,0.9.",
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
        click.option("--loss", type=click.Choice(["mae", "mse", "huber"]), default="mae", show_default=True),
        click.option(
            "--scaling",
            type=click.Choice(["mean", "std"]),
            default="mean",
            show_default=True,
            help="Per-series scale: mean absolute value or standard deviation.",
        ),
        click.option(
            "--transform",
            type=click.Choice(["auto", "log", "none"]),
            default="auto",
            show_default=True,
            help="Model the log of the values (log), or the values (none); auto: log when every value is positive. Forecasts come back in the data's units.",
        ),
        click.option(
            "--series-weight",
            type=click.Choice(["equal", "mase"]),
            default="equal",
            show_default=True,
            help="mase: weigh each series' loss by 1 / its in-sample seasonal naive error (the loss becomes MASE; weights kept within 10x of their median).",
        ),
        click.option(
            "--ensemble",
            type=int,
            default=3,
            show_default=True,
            help="Train N members (seeds --seed, --seed+1, ..) and forecast their median; every command serves the one file. Three cut M4 Hourly's validation MASE by a tenth against one; 1 trains a single network.",
        ),
        click.option(
            "--ensemble-cells",
            metavar="CELL,CELL,..",
            callback=lambda ctx, param, value: tuple(c.strip() for c in value.split(",")) if value else (),
            help="Cells the members take in turn, e.g. lstm,gru [default: --cell for all].",
        ),
        click.option(
            "--val-size", type=int, help="Validation steps at the end of each series [default: horizon]."
        ),
        click.option(
            "--patience",
            type=int,
            default=5,
            show_default=True,
            help="Epochs without improvement before stopping.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def parse_floats(text: str | None) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(
            f"--quantiles takes numbers separated by commas, e.g. 0.1,0.5,0.9; got {text!r}"
        ) from None


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def notes(notes, quiet: bool) -> None:
    if not quiet:
        for note in notes:
            click.echo(f"note: {note}", err=True)


def read_for_model(forecaster, data, id_col, time_col, target, covariates):
    """Read DATA, or the model's own data source, with the model's column mapping unless overridden."""
    from streamcast.reading import read_series

    return _with_model_columns(read_series, forecaster, data, id_col, time_col, target, covariates)


def reader_for_model(forecaster, data, id_col, time_col, target, covariates):
    """`read_for_model` for reading in batches of series: a BatchReader that has listed the ids."""
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
