"""Plots of a :class:`rechallenge.validation.ValidationResult`.

Each function takes ``ax=None`` (a new figure on the Agg-safe object API) and returns the
matplotlib Figure. Matplotlib is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _err(g, column: str):
    """Non-negative error-bar lengths of ``column`` from its ``_lower``/``_upper`` columns."""
    return [np.maximum(g[column] - g[f"{column}_lower"], 0), np.maximum(g[f"{column}_upper"] - g[column], 0)]


def _axes(ax, n: int = 1, width: float = 4.2):
    if ax is not None:
        axes = list(np.atleast_1d(ax))
        return axes[0].figure, axes
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n, 4.2), layout="constrained")
    return fig, list(np.atleast_1d(fig.subplots(1, n)))


def plot_calibration(result: Any, time: float | None = None, ax=None):
    """Calibration of predicted PFS2 risk at ``time`` (all validation times if None).

    Per panel: the ideal diagonal; the flexible calibration curve of the posterior-mean
    prediction (restricted-cubic-spline Cox model) with the 95% band of the per-draw
    curves; quantile groups as points, with the Kaplan–Meier 95% interval (vertical) and
    the 95% posterior interval of the group's mean predicted risk (horizontal); a rug of
    the predicted risks.
    """
    curves = result.calibration_curves
    all_times = [float(t) for t in curves["time"].values]
    times = all_times if time is None else [float(time)]
    if any(t not in all_times for t in times):
        raise ValueError(f"time must be one of {all_times}, got {time!r}")
    fig, axes = _axes(ax, len(times))
    if len(axes) < len(times):
        raise ValueError(f"{len(times)} time points need {len(times)} axes, got {len(axes)}")
    risk_mean = 1.0 - result.predictions["survival"].mean("draw")
    for axis, t in zip(axes, times):
        c = curves.sel(time=t)
        x = c["predicted"].values
        band = np.nanquantile(c["observed_draws"].values, [0.025, 0.975], axis=0)
        axis.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="ideal")
        axis.fill_between(x, band[0], band[1], color="C0", alpha=0.2, lw=0, label="95% band (draws)")
        axis.plot(x, c["observed"].values, color="C0", lw=2, label="calibration curve")
        g = result.calibration[result.calibration["time"] == t]
        axis.errorbar(g["predicted"], g["observed"], yerr=_err(g, "observed"), xerr=_err(g, "predicted"),
                      fmt="o", color="C3", ms=5, capsize=2, label="groups (KM 95% CI)")
        r = risk_mean.sel(time=t).values
        axis.plot(r, np.full_like(r, 0.01), "|", color="0.3", ms=8, alpha=0.4)
        slope = float(result.point["cal_slope"].sel(time=t))
        ici = float(result.point["ici"].sel(time=t))
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"predicted risk of progression by {t:g} months",
                 ylabel="observed risk", title=f"{t:g} months: slope {slope:.2f}, ICI {ici:.3f}")
        axis.set_aspect("equal")
    axes[0].legend(loc="upper left", fontsize=7, frameon=False)
    return fig


def plot_ppc_km(result: Any, ax=None):
    """Cohort-average predicted PFS2 (posterior median and 95% band) against Kaplan–Meier."""
    ppc = result.ppc
    fig, axes = _axes(ax, 1, width=5.5)
    axis = axes[0]
    t = ppc["ppc_time"].values
    pred = ppc["predicted"].values
    lo, med, hi = np.quantile(pred, [0.025, 0.5, 0.975], axis=0)
    axis.fill_between(t, lo, hi, color="C0", alpha=0.25, lw=0, label="predicted, 95% band")
    axis.plot(t, med, color="C0", lw=2, label="predicted (cohort average)")
    axis.step(t, ppc["km"].values, where="post", color="k", lw=1.5, label="Kaplan-Meier")
    axis.fill_between(t, ppc["km_lower"].values, ppc["km_upper"].values, step="post", color="0.5",
                      alpha=0.2, lw=0, label="Kaplan-Meier 95% CI")
    axis.set(xlabel="months", ylabel="PFS2", ylim=(0, 1.02), xlim=(0, t[-1]),
             title=(f"band covers KM {100 * ppc.attrs['band_covers_km']:.0f}% · "
                    f"KM CI covers median {100 * ppc.attrs['km_ci_covers_median']:.0f}%"))
    axis.legend(fontsize=7, frameon=False)
    return fig


def plot_irae_calibration(result: Any, outcome: str = "irae_any", ax=None):
    """Observed (Wilson 95% CI) vs mean predicted irAE recurrence by quantile group."""
    table = result.irae_calibration
    if table.empty:
        raise ValueError("no irAE outcomes were validated")
    g = table[table["outcome"] == outcome]
    if g.empty:
        raise ValueError(f"outcome must be 'irae_any' or 'irae_grade3plus', got {outcome!r}")
    fig, axes = _axes(ax)
    axis = axes[0]
    top = float(min(1.0, 1.2 * max(g["observed_upper"].max(), g["predicted_upper"].max())))
    axis.plot([0, top], [0, top], color="0.6", lw=1, ls="--")
    axis.errorbar(g["predicted"], g["observed"], yerr=_err(g, "observed"), xerr=_err(g, "predicted"),
                  fmt="o", color="C2", capsize=2)
    point = result.point.sel(irae_outcome=outcome)
    axis.set(xlim=(0, top), ylim=(0, top), xlabel="predicted probability", ylabel="observed proportion",
             title=(f"{outcome}: intercept {float(point['irae_cal_intercept']):.2f}, "
                    f"slope {float(point['irae_cal_slope']):.2f}"))
    axis.set_aspect("equal")
    return fig
