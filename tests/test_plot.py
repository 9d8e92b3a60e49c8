"""Pictures: `streamcast plot` and `fit --report` write real figures, and refuse what they cannot draw."""

from __future__ import annotations

from dataclasses import replace

import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.plotting import plot_training
from tests.conftest import TINY, hourly_frame

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("plot") / "series.csv"
    hourly_frame(series=6, length=200).write_csv(path)
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, tiny_data):
    path = tmp_path_factory.mktemp("plot_model") / "model.streamcast"
    sc.save(sc.fit(tiny_data, replace(TINY, quantiles=(0.1, 0.5, 0.9))), path)
    return path


def invoke(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def test_plot_draws_the_chosen_series_with_actuals_and_interval_as_svg(model_path, data_path, tmp_path):
    out = tmp_path / "check.svg"
    result = invoke(
        "plot",
        "-m",
        model_path,
        data_path,
        "--series",
        "s1",
        "--series",
        "s4",
        "--as-of",
        "2024-01-06T12:00",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stderr
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    for text in ("s1", "s4", "history", "actual", "forecast", "80% interval"):
        assert text in svg, text
    assert "s2:" not in svg


def test_plot_defaults_to_the_first_four_series_and_says_so(model_path, data_path, tmp_path):
    out = tmp_path / "first.png"
    result = invoke("plot", "-m", model_path, data_path, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert "drew the first 4 of 6 series" in result.stderr


@pytest.mark.parametrize(
    ("picture", "extra", "code", "message"),
    [
        ("picture.gif", [], 2, "must end in .png, .svg, .pdf"),
        ("x.png", ["--series", "nope"], 1, "series 'nope' is not in"),
    ],
)
def test_plot_errors_are_one_line_and_write_nothing(
    model_path, data_path, tmp_path, picture, extra, code, message
):
    result = invoke("plot", "-m", model_path, data_path, "-o", tmp_path / picture, *extra)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_plot_warns_like_forecast_about_a_long_horizon_and_a_late_as_of(model_path, data_path, tmp_path):
    out = tmp_path / "late.png"
    result = invoke("plot", "-m", model_path, data_path, "--as-of", "2030-01-01", "--horizon", 9, "-o", out)
    assert result.exit_code == 0, result.output
    assert "warning: --horizon 9 is longer than the trained 6" in result.stderr
    assert "warning: --as-of 2030-01-01 is after the last observation" in result.stderr
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_fit_report_draws_the_training_curves(data_path, tmp_path):
    report = tmp_path / "training.png"
    result = invoke(
        "fit",
        data_path,
        "-o",
        tmp_path / "m.streamcast",
        "--hidden",
        8,
        "--epochs",
        2,
        "--horizon",
        6,
        "--report",
        report,
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert report.read_bytes()[:8] == PNG_MAGIC


def test_fit_report_with_a_bad_suffix_fails_before_training(data_path, tmp_path):
    result = invoke("fit", data_path, "-o", tmp_path / "m.streamcast", "--report", tmp_path / "r.bmp")
    assert result.exit_code == 2
    assert "must end in" in result.stderr
    assert not (tmp_path / "m.streamcast").exists()


def test_plot_training_titles_every_panel(tiny_model, tmp_path):
    out = plot_training(tiny_model.info["history"], tmp_path / "t.svg", clip=1.0)
    svg = out.read_text()
    for title in ("Loss", "Gradient norm before clipping", "Steps clipped", "Gradient reach"):
        assert title in svg, title


def test_plot_history_longer_than_any_series_draws_all_of_it(model_path, data_path, tmp_path):
    out = tmp_path / "all.svg"
    result = invoke("plot", "-m", model_path, data_path, "--series", "s1", "--history", "9" * 20, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_plot_as_of_marks_interpolated_values_and_does_not_draw_them_as_actuals(model_path, tmp_path):
    import polars as pl

    from streamcast.plotting import plot_forecasts

    gappy = hourly_frame(series=1, length=200).filter(~pl.int_range(pl.len()).is_between(150, 153))
    data = sc.read_series(gappy)
    table = sc.forecast(sc.load(model_path), data, as_of="2024-01-07T00:00")
    out = tmp_path / "gap.svg"
    fig_path = plot_forecasts(data, table, out)
    svg = fig_path.read_text()
    assert "interpolated (not observed)" in svg
    whole = hourly_frame(series=1, length=200)
    plot_forecasts(sc.read_series(whole), table, tmp_path / "whole.svg")
    assert "interpolated" not in (tmp_path / "whole.svg").read_text()
