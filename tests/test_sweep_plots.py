"""Sweep figures read without the text: units on the axes, the error bars explained, a log axis only where the
values span a decade or more (issue 19 item 7)."""
import pandas as pd
import pytest

from memsim.sweep import plots


@pytest.fixture
def figures(monkeypatch):
    kept = []
    monkeypatch.setattr(plots, "save", lambda fig, path: kept.append(fig) or path)
    return kept


def _df(energies):
    n = len(energies)
    return pd.DataFrame({"status": ["ok"] * n, "energy": energies, "accuracy": [0.8 + 0.01 * k for k in range(n)],
                         "accuracy_std": [0.01] * n, "tile.size": [32, 64, 128, 256][:n],
                         "noise.program": [0.0, 0.05, 0.0, 0.05][:n], "arch": ["mlp"] * n})


@pytest.mark.parametrize("energies, log", [([1.01e-9, 1.2e-9, 1.5e-9, 1.78e-9], False),
                                           ([1e-9, 3e-9, 9e-9, 2.1e-8], True)])
def test_pareto_energy_axis_is_log_only_over_a_decade(figures, tmp_path, energies, log):
    plots.plot_pareto(_df(energies), tmp_path / "p.png")
    ax = figures[-1].axes[0]
    assert (ax.get_xscale() == "log") is log
    assert ax.get_xlabel() == "energy per inference (nJ)" and "accuracy (%)" in ax.get_ylabel()
    if log:  # plain numbers on the ticks (2, 5, 10 nJ), not powers of ten with one label
        figures[-1].canvas.draw()
        shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert len(shown) >= 3 and all("10^" not in t and "times" not in t for t in shown), shown


def test_accuracy_vs_tile_states_units_and_error_bars(figures, tmp_path):
    plots.plot_accuracy_vs_tile(_df([1e-9] * 4), tmp_path / "a.png")
    fig = figures[-1]
    ax = fig.axes[0]
    assert ax.get_xlabel() == plots.label("tile.size") and "cells" in ax.get_xlabel()
    assert "error bars" in fig._suptitle.get_text()
    assert ax.get_legend().get_title().get_text() == plots.label("noise.program")


def test_accuracy_vs_tile_spaces_the_tiles_evenly_without_a_log_axis(figures, tmp_path):
    """32-256 spans less than a decade: a linear axis, each tile size a labelled, equally spaced tick."""
    plots.plot_accuracy_vs_tile(_df([1e-9] * 4), tmp_path / "a.png")
    ax = figures[-1].axes[0]
    assert ax.get_xscale() == "linear"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["32", "64", "128", "256"]
    assert list(ax.get_xticks()) == [0, 1, 2, 3]
    # each point sits at its tile's tick: 0.80 at 32 (index 0) ... 0.83 at 256 (index 3), in %
    pts = sorted((x, y) for c in ax.containers for x, y in zip(*c.lines[0].get_data()))  # the error bars' data lines
    assert [x for x, _ in pts] == [0, 1, 2, 3] and [y for _, y in pts] == pytest.approx([80.0, 81.0, 82.0, 83.0])
