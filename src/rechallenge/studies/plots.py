"""Plots of simulation studies and SBC. Every function takes ``ax=None`` and returns the Axes.

Figures are made with :class:`matplotlib.figure.Figure` (no pyplot state, no GUI
backend), so they work headless; the ``save_*`` functions write PNG files. Error bars
are ±1.96 Monte Carlo SEs (Morris et al. 2019).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["plot_coverage", "plot_bias", "plot_assurance", "plot_rank_histogram", "plot_ecdf_difference",
           "save_study_plots", "save_sbc_plots"]


def _axes(ax, size=(6.0, 4.0)):
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained").add_subplot()


def _dot_plot(summary, var: str, mcse: str, estimand: str, ax, level: float | None = None):
    scen = [str(s) for s in summary["scenario"].values]
    meth = [str(m) for m in summary["method"].values]
    width = 0.8 / max(1, len(meth))
    for j, m in enumerate(meth):
        sel = dict(method=m, estimand=estimand)
        if level is not None:
            sel["level"] = level
        y = summary[var].sel(sel).values
        e = 1.96 * summary[mcse].sel(sel).values
        x = np.arange(len(scen)) - 0.4 + width * (j + 0.5)
        ax.errorbar(x, y, yerr=e, fmt="o", capsize=3, label=m)
    ax.set_xticks(np.arange(len(scen)), scen, rotation=30, ha="right")
    ax.set_title(estimand)
    return ax


def plot_coverage(summary, estimand: str | None = None, level: float = 0.95, ax=None):
    """Coverage of the ``level`` credible interval per scenario and method, ±1.96 MCSE,
    with the nominal level as a dashed line."""
    ax = _axes(ax)
    estimand = estimand or str(summary["estimand"].values[0])
    _dot_plot(summary, "coverage", "coverage_mcse", estimand, ax, level=level)
    ax.axhline(level, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel(f"coverage of {level:.0%} CrI")
    ax.legend(fontsize="small")
    return ax


def plot_bias(summary, estimand: str | None = None, ax=None):
    """Bias of the posterior mean per scenario and method, ±1.96 MCSE."""
    ax = _axes(ax)
    estimand = estimand or str(summary["estimand"].values[0])
    _dot_plot(summary, "bias", "bias_mcse", estimand, ax)
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel("bias (posterior mean − truth)")
    ax.legend(fontsize="small")
    return ax


def plot_assurance(table, target: float = 0.8, level: float = 0.95, ax=None):
    """Probability that the CrI excludes 0 against cohort size, ±1.96 MCSE, with the target."""
    ax = _axes(ax)
    ax.errorbar(table["n"], table["probability"], yerr=1.96 * table["mcse"], fmt="o-", capsize=3)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("local patients (n)")
    ax.set_ylabel(f"P({level:.0%} CrI excludes the null)")
    ax.set_ylim(0, 1)
    return ax


def plot_rank_histogram(ranks: Sequence[int], L: int, bins: int | None = None, ax=None, title: str = ""):
    """Histogram of SBC ranks with the 99% band of a uniform bin count (binomial)."""
    from scipy import stats

    from .ranks import _bins

    ax = _axes(ax, (3.0, 2.2))
    r = np.asarray(ranks)
    r = r[r >= 0]
    b = bins or max(_bins(L, max(r.size, 1)), 1)
    counts = np.bincount(r * b // (L + 1), minlength=b)
    lo, hi = stats.binom.ppf([0.005, 0.995], r.size, 1.0 / b)
    ax.axhspan(lo, hi, color="grey", alpha=0.25, linewidth=0)
    ax.bar(np.arange(b), counts, width=1.0, align="edge", edgecolor="white")
    ax.set_title(title, fontsize="small")
    ax.set_xticks([])
    return ax


def plot_ecdf_difference(ranks: Sequence[int], L: int, alpha: float = 0.05, ax=None, title: str = ""):
    """ECDF of the fractional ranks minus the uniform CDF, with the simultaneous
    ``1 - alpha`` band of Säilynoja et al. (2022) (:func:`rechallenge.studies.ranks.ecdf_band`)."""
    from .ranks import _counts_below, ecdf_band

    ax = _axes(ax, (3.0, 2.2))
    r = np.asarray(ranks, dtype=np.int64)
    r = r[r >= 0]
    z, lo, hi = ecdf_band(r.size, L, alpha)
    diff = _counts_below(r, L) / r.size - z
    ax.fill_between(z, lo, hi, color="grey", alpha=0.25, linewidth=0)
    ax.plot(z, diff, marker="." if L < 60 else None, markersize=3)
    outside = (diff < lo) | (diff > hi)
    ax.plot(z[outside], diff[outside], "o", color="tab:red", markersize=4)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_title(title, fontsize="small")
    return ax


def _grid(n: int, size=(2.6, 2.0)):
    from matplotlib.figure import Figure

    cols = min(5, max(1, n))
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def save_study_plots(result: Any, out_dir: str | Path) -> list[Path]:
    """``coverage.png``, ``bias.png`` (one panel per estimand) and ``assurance.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = result.summary
    ests = [str(e) for e in summary["estimand"].values]
    paths = []
    for name, fn in (("coverage", plot_coverage), ("bias", plot_bias)):
        fig, axes = _grid(len(ests), (4.5, 3.5))
        for ax, est in zip(axes, ests):
            fn(summary, est, ax=ax)
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    if result.assurance is not None:
        ss = result.config.sample_size
        ax = plot_assurance(result.assurance, ss.target, ss.level)
        path = out_dir / "assurance.png"
        ax.figure.savefig(path, dpi=110)
        paths.append(path)
    return paths


def save_sbc_plots(result: Any, out_dir: str | Path, alpha: float = 0.05) -> list[Path]:
    """``sbc_ranks.png`` (rank histograms) and ``sbc_ecdf.png`` (ECDF differences with
    simultaneous bands), one panel per test quantity."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [str(q) for q in result.ranks["quantity"].values]
    paths = []
    for fname, fn in (("sbc_ranks.png", plot_rank_histogram), ("sbc_ecdf.png", plot_ecdf_difference)):
        fig, axes = _grid(len(names))
        for ax, q in zip(axes, names):
            kwargs = {"alpha": alpha} if fn is plot_ecdf_difference else {}
            fn(result.ranks["rank"].sel(quantity=q).values, result.L, ax=ax, title=q, **kwargs)
        path = out_dir / fname
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths
