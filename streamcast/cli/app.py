"""The `streamcast` command: a thin shell that parses options, calls the library, prints results.

stdout carries data only; progress, tables and warnings go to stderr. Every user error becomes one
line on stderr and an exit code (2 usage, 1 data or model file, 75 lock timeout); bugs stay tracebacks.
"""

from __future__ import annotations

import errno
import sys
import warnings

import click

import streamcast
from streamcast.cli.backtest import backtest
from streamcast.cli.fit import fit, info
from streamcast.cli.forecast import forecast, plot
from streamcast.cli.options import CONTEXT
from streamcast.cli.stream import stream
from streamcast.errors import StreamcastError, StreamcastWarning

_PATH_ERRORS = {
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENAMETOOLONG,
}


class _Group(click.Group):
    """Turns the library's user errors into one stderr line and the error's exit code."""

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings():
                # The commands word the library's warnings in their own options' terms.
                warnings.simplefilter("ignore", StreamcastWarning)
                return super().invoke(ctx)
        except StreamcastError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            # `streamcast forecast | head` closing the pipe early is not an error.
            sys.stderr.close()
            ctx.exit(0)
        except OSError as exc:
            # A path that is a folder, a disk that is full, a permission: the system's own words
            # say it best, on one line, and the atomic writes have left every old file intact.
            # Other OS errors are not the user's to fix: they stay tracebacks.
            if exc.errno not in _PATH_ERRORS:
                raise
            where = f" {exc.filename!r}" if exc.filename else ""
            click.echo(
                f"Error: cannot use{where}: {exc.strerror or exc}; check the path and its permissions",
                err=True,
            )
            ctx.exit(1)


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    """--version, looked up only when asked for (click's own option reads it at start-up)."""
    if value and not ctx.resilient_parsing:
        click.echo(f"streamcast, version {streamcast.__version__}")
        ctx.exit()


@click.group(cls=_Group, context_settings=CONTEXT)
@click.option(
    "-V",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def main() -> None:
    """Forecast time series with stateful recurrent networks, in batch and on live streams.

    \b
      streamcast fit data.parquet              # train; writes model.streamcast
      streamcast forecast --horizon 24         # forecast every series from the newest data
      producer | streamcast stream             # a rolling forecast for every tick on stdin
      streamcast info                          # what is inside a model file
    """


for command in (fit, info, forecast, stream, backtest, plot):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
