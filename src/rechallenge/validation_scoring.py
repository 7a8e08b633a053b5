"""Scoring machinery of :mod:`rechallenge.validation`: every metric of a set of pooled
posterior predictions (per draw, on the posterior mean and per bootstrap resample),
grouped calibration tables, calibration curves and the Kaplan–Meier predictive check.
The measures themselves are in :mod:`rechallenge.validation_metrics`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
import xarray as xr

from . import validation_metrics as vm
from .errors import RechallengeError

IRAE_OUTCOMES = ("irae_any", "irae_grade3plus")
_IBS_POINTS = 25
_PPC_POINTS = 49
_PPC_MIN_AT_RISK = 10
_CURVE_POINTS = 50

#: metric -> (TRIPOD section, label)
METRICS: dict[str, tuple[str, str]] = {
    "harrell_c": ("Discrimination", "Harrell's C"),
    "uno_c": ("Discrimination", "Uno's C (IPCW)"),
    "auc": ("Discrimination", "time-dependent AUC"),
    "cal_slope": ("Calibration", "calibration slope (Cox on cll)"),
    "oe": ("Calibration", "O/E (Kaplan-Meier / mean predicted risk)"),
    "ici": ("Calibration", "ICI"),
    "e50": ("Calibration", "E50"),
    "e90": ("Calibration", "E90"),
    "emax": ("Calibration", "Emax"),
    "brier": ("Overall performance", "Brier score"),
    "brier_null": ("Overall performance", "Brier score, Kaplan-Meier null model"),
    "ipa": ("Overall performance", "IPA (1 - Brier / null Brier)"),
    "ibs": ("Overall performance", "integrated Brier score"),
    "ibs_null": ("Overall performance", "integrated Brier score, null model"),
    "irae_auc": ("irAE recurrence", "AUC"),
    "irae_cal_intercept": ("irAE recurrence", "calibration intercept (logit offset)"),
    "irae_cal_slope": ("irAE recurrence", "calibration slope (logit)"),
    "irae_oe": ("irAE recurrence", "O/E"),
    "irae_brier": ("irAE recurrence", "Brier score"),
    "irae_log_loss": ("irAE recurrence", "log-loss"),
}
_PER_TIME = ("auc", "cal_slope", "oe", "ici", "e50", "e90", "emax", "brier", "brier_null", "ipa")
_IRAE = ("brier", "log_loss", "auc", "oe", "cal_intercept", "cal_slope")


def check_times(times: Iterable[float], time: np.ndarray) -> np.ndarray:
    """Sorted validation times, each within the follow-up ``[min, max)`` of ``time``."""
    out = np.asarray(sorted(float(t) for t in times))
    if out.size == 0 or not np.all(np.isfinite(out)):
        raise RechallengeError("times must be a non-empty list of finite months")
    bad = out[(out < time.min()) | (out >= time.max())]
    if bad.size:
        raise RechallengeError(f"validation time(s) {bad.tolist()} outside the test cohort's follow-up "
                               f"[{time.min():g}, {time.max():g}) months")
    return out


@dataclass
class Scored:
    """Pooled predictions and outcomes (any order of patients)."""

    ids: np.ndarray
    time: np.ndarray
    event: np.ndarray
    irae: np.ndarray  # 0/1/2, NaN not assessed
    grid: np.ndarray  # all prediction times
    survival: np.ndarray  # (S, n, G)
    irae_any: np.ndarray | None  # (S, n)
    irae_3: np.ndarray | None
    fold: np.ndarray
    reliable: bool


@dataclass
class Context:
    y_train: np.ndarray
    km_train_times: np.ndarray  # KM of training cohort at times (null model)
    km_train_grid: np.ndarray
    times: np.ndarray
    t_idx: np.ndarray
    ibs_grid: np.ndarray
    ibs_idx: np.ndarray
    tau: float
    c_idx: int
    curve_risk: np.ndarray | None = None  # (T, P)


def grids(time: np.ndarray, times: np.ndarray, ibs_grid: Iterable[float] | None,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if ibs_grid is None:
        lo = float(np.quantile(time, 0.1))
        lo = lo if lo < times[-1] else float(time.min())
        ibs = np.linspace(lo, times[-1], _IBS_POINTS)
    else:
        ibs = check_times(ibs_grid, time)
        if ibs.size < 2:
            raise RechallengeError("ibs_grid needs at least two times")
    ppc_max = float(np.sort(time)[-min(_PPC_MIN_AT_RISK, time.size)])
    ppc = np.linspace(0.0, ppc_max, _PPC_POINTS)
    grid = np.unique(np.round(np.concatenate([times, ibs, ppc]), 10))
    return np.round(ibs, 10), np.round(ppc, 10), grid


def context(y_train: np.ndarray, times: np.ndarray, ibs: np.ndarray, grid: np.ndarray,
             tau: float | None) -> Context:
    t_tr, e_tr = y_train["time"], y_train["event"]
    km_at = lambda at: np.nan_to_num(vm.km(t_tr, e_tr, at)[0], nan=0.0)  # noqa: E731
    return Context(y_train=y_train, km_train_times=km_at(times), km_train_grid=km_at(ibs), times=times,
                    t_idx=np.searchsorted(grid, np.round(times, 10)), ibs_grid=ibs,
                    ibs_idx=np.searchsorted(grid, ibs), tau=float(times[-1] if tau is None else tau),
                    c_idx=int(np.searchsorted(grid, np.round(times[-1], 10))))


# --------------------------------------------------------------------------- scoring


def _null_scores(time: np.ndarray, event: np.ndarray, ctx: Context) -> dict[str, Any]:
    """Brier score and IBS of the null model (the training Kaplan-Meier curve for everyone)."""
    y_test = vm.surv(time, event)
    n = time.size
    return {"brier_null": vm.brier(ctx.y_train, y_test, np.broadcast_to(ctx.km_train_times, (n, ctx.times.size)),
                                   ctx.times),
            "ibs_null": vm.ibs(ctx.y_train, y_test, np.broadcast_to(ctx.km_train_grid, (n, ctx.ibs_grid.size)),
                               ctx.ibs_grid)}


def _survival_scores(surv: np.ndarray, time: np.ndarray, event: np.ndarray, ctx: Context,
                     with_curves: bool = False, null: dict[str, Any] | None = None) -> dict[str, Any]:
    """All PFS2 metrics of one prediction matrix ``surv`` (n, G); ``null``: precomputed
    :func:`_null_scores` of the same patients."""
    y_test = vm.surv(time, event)
    s_t = surv[:, ctx.t_idx]
    risk = 1.0 - surv[:, ctx.c_idx]
    out: dict[str, Any] = {
        "harrell_c": vm.harrell_c(time, event, risk),
        "uno_c": vm.uno_c(ctx.y_train, y_test, risk, ctx.tau),
        "auc": vm.td_auc(ctx.y_train, y_test, 1.0 - s_t, ctx.times),
        "brier": vm.brier(ctx.y_train, y_test, s_t, ctx.times),
        "ibs": vm.ibs(ctx.y_train, y_test, surv[:, ctx.ibs_idx], ctx.ibs_grid),
        **(null if null is not None else _null_scores(time, event, ctx)),
    }
    out["ipa"] = 1.0 - out["brier"] / out["brier_null"]
    cal = [vm.survival_calibration(time, event, s_t[:, j], float(t),
                                   curve_risk=ctx.curve_risk[j] if with_curves else None)
           for j, t in enumerate(ctx.times)]
    for key in ("cal_slope", "oe", "ici", "e50", "e90", "emax"):
        out[key] = np.array([c["slope" if key == "cal_slope" else key] for c in cal], dtype=float)
    out["ici_method"] = [c["ici_method"] for c in cal]
    if with_curves:
        out["curve"] = np.stack([c["curve"] for c in cal])
    return out


def _irae_scores(p_any: np.ndarray, p_3: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """irAE metrics (irae_outcome,) of one set of probabilities; ``y`` 0/1/2 (assessed only)."""
    res = [vm.binary_metrics(y >= 1, p_any), vm.binary_metrics(y == 2, p_3)]
    return {f"irae_{k}": np.array([r[k] for r in res]) for k in _IRAE}


def _to_dataset(rows: list[dict[str, Any]], dim: str | None, times: np.ndarray) -> xr.Dataset:
    """Stack metric dicts (one per draw / replicate, or a single one) into a Dataset."""
    lead = () if dim is None else (dim,)
    data = {}
    for key in rows[0]:
        if key in ("ici_method", "curve"):
            continue
        values = np.array([r[key] for r in rows], dtype=float)
        values = values[0] if dim is None else values
        if key in _PER_TIME:
            data[key] = (lead + ("time",), values)
        elif key.startswith("irae_"):
            data[key] = (lead + ("irae_outcome",), values)
        else:
            data[key] = (lead, values)
    coords: dict[str, Any] = {"time": times, "irae_outcome": list(IRAE_OUTCOMES)}
    if dim is not None:
        coords[dim] = np.arange(len(rows))
    ds = xr.Dataset(data, coords=coords)
    for name in ds.data_vars:
        ds[name].attrs["long_name"] = METRICS[name][1]
    return ds


def _summary(metrics: xr.Dataset, point: xr.Dataset, boot: xr.Dataset | None) -> pd.DataFrame:
    rows = []
    for name in METRICS:
        if name not in point:
            continue
        da = point[name]
        outcome_dim = "irae_outcome" if "irae_outcome" in da.dims else None
        keys = [{}]
        if "time" in da.dims:
            keys = [{"time": t} for t in da["time"].values]
        elif outcome_dim:
            keys = [{"irae_outcome": o} for o in da["irae_outcome"].values]
        for key in keys:
            draws = metrics[name].sel(key).values
            draws = draws[np.isfinite(draws)]
            row = {"metric": name, "outcome": key.get("irae_outcome", "pfs2"),
                   "time": float(key.get("time", np.nan)), "value": float(da.sel(key)),
                   "posterior_median": float(np.median(draws)) if draws.size else np.nan,
                   "posterior_lower": float(np.quantile(draws, 0.025)) if draws.size else np.nan,
                   "posterior_upper": float(np.quantile(draws, 0.975)) if draws.size else np.nan,
                   "boot_lower": np.nan, "boot_upper": np.nan}
            if boot is not None:
                b = boot[name].sel(key).values
                b = b[np.isfinite(b)]
                if b.size:
                    row["boot_lower"], row["boot_upper"] = np.quantile(b, [0.025, 0.975])
            rows.append(row)
    return pd.DataFrame(rows)


def _ppc(s: Scored, ppc_times: np.ndarray) -> xr.Dataset:
    idx = np.searchsorted(s.grid, ppc_times)
    avg = s.survival[:, :, idx].mean(axis=1)  # (S, P)
    est, lo, hi = vm.km(s.time, s.event, ppc_times)
    band = np.quantile(avg, [0.025, 0.975], axis=0)
    med = np.median(avg, axis=0)
    inner = ppc_times > 0
    ds = xr.Dataset({"predicted": (("draw", "ppc_time"), avg), "km": ("ppc_time", est),
                     "km_lower": ("ppc_time", lo), "km_upper": ("ppc_time", hi)},
                    coords={"ppc_time": ppc_times, "draw": np.arange(avg.shape[0])})
    ds.attrs["band_covers_km"] = float(np.mean((est[inner] >= band[0, inner]) & (est[inner] <= band[1, inner])))
    ds.attrs["km_ci_covers_median"] = float(np.mean((med[inner] >= lo[inner]) & (med[inner] <= hi[inner])))
    ds.attrs["max_abs_difference"] = float(np.max(np.abs(med[inner] - est[inner])))
    return ds


def evaluate(s: Scored, ctx: Context, ppc_times: np.ndarray, *, n_boot: int, n_groups: int, seed: int,
             info: dict[str, Any]) -> dict[str, Any]:
    """Every metric of pooled predictions: the fields of a ``ValidationResult``."""
    n_s = s.survival.shape[0]
    surv_mean = s.survival.mean(axis=0)
    s_t_mean = surv_mean[:, ctx.t_idx]
    lo, hi = np.quantile(1 - s_t_mean, [0.01, 0.99], axis=0)
    ctx.curve_risk = np.stack([np.linspace(a, b, _CURVE_POINTS) for a, b in zip(lo, hi)])
    null = _null_scores(s.time, s.event, ctx)
    per_draw = [_survival_scores(s.survival[k], s.time, s.event, ctx, with_curves=True, null=null)
                for k in range(n_s)]
    point = _survival_scores(surv_mean, s.time, s.event, ctx, with_curves=True, null=null)
    rng = np.random.default_rng([seed, 7])
    boots = [rng.integers(0, s.time.size, s.time.size) for _ in range(n_boot)]
    boot_rows = [_survival_scores(surv_mean[b], s.time[b], s.event[b], ctx) for b in boots]
    irae_groups = []
    assessed = np.isfinite(s.irae)
    if s.irae_any is not None and assessed.sum() >= 2:
        y = s.irae[assessed]
        pa, p3 = s.irae_any[:, assessed], s.irae_3[:, assessed]
        for k in range(n_s):
            per_draw[k].update(_irae_scores(pa[k], p3[k], y))
        point.update(_irae_scores(pa.mean(0), p3.mean(0), y))
        for r, b in zip(boot_rows, boots):
            keep = b[assessed[b]]
            keep_pos = np.searchsorted(np.flatnonzero(assessed), keep)
            r.update(_irae_scores(pa.mean(0)[keep_pos], p3.mean(0)[keep_pos], s.irae[keep]))
        for name, p, yy in (("irae_any", pa, y >= 1), ("irae_grade3plus", p3, y == 2)):
            table = vm.grouped_binary_calibration(yy, p, p.mean(0), n_groups)
            table.insert(0, "outcome", name)
            irae_groups.append(table)
    metrics = _to_dataset(per_draw, "draw", ctx.times)
    point_ds = _to_dataset([point], None, ctx.times)
    boot_ds = _to_dataset(boot_rows, "replicate", ctx.times) if boot_rows else None
    point_ds.attrs["ici_method"] = json.dumps(point["ici_method"])
    calibration = pd.concat([vm.grouped_survival_calibration(s.time, s.event, 1 - s.survival[:, :, j],
                                                             1 - surv_mean[:, j], float(t), n_groups)
                             for t, j in zip(ctx.times, ctx.t_idx)], ignore_index=True)
    curves = xr.Dataset({"predicted": (("time", "point"), ctx.curve_risk),
                         "observed": (("time", "point"), point["curve"]),
                         "observed_draws": (("draw", "time", "point"), np.stack([r["curve"] for r in per_draw]))},
                        coords={"time": ctx.times, "point": np.arange(_CURVE_POINTS), "draw": np.arange(n_s)})
    predictions = _predictions_dataset(s, ctx, surv_mean)
    info = {**info, "n_draws": n_s, "n_boot": n_boot, "n_groups": n_groups, "times": ctx.times.tolist(),
            "uno_tau": ctx.tau, "c_index_risk_time": float(ctx.times[-1]),
            "ibs_range": [float(ctx.ibs_grid[0]), float(ctx.ibs_grid[-1])], "ibs_grid": ctx.ibs_grid.tolist(),
            "reliable": s.reliable,
            "irae_assessed": int(assessed.sum()) if s.irae_any is not None else 0,
            "irae_any_events": int((s.irae[assessed] >= 1).sum()) if s.irae_any is not None else 0,
            "irae_grade3plus_events": int((s.irae[assessed] == 2).sum()) if s.irae_any is not None else 0}
    return dict(
        metrics=metrics, point=point_ds, bootstrap=boot_ds, summary=_summary(metrics, point_ds, boot_ds),
        calibration=calibration, calibration_curves=curves,
        irae_calibration=pd.concat(irae_groups, ignore_index=True) if irae_groups else pd.DataFrame(),
        ppc=_ppc(s, ppc_times), predictions=predictions, info=info)


def _predictions_dataset(s: Scored, ctx: Context, surv_mean: np.ndarray) -> xr.Dataset:
    data = {"survival": (("draw", "patient", "time"), s.survival[:, :, ctx.t_idx]),
            "survival_mean": (("patient", "grid_time"), surv_mean),
            "risk_score": ("patient", 1.0 - surv_mean[:, ctx.c_idx]),
            "observed_time": ("patient", s.time), "observed_event": ("patient", s.event.astype(int)),
            "fold": ("patient", s.fold), "irae_outcome_code": ("patient", s.irae)}
    if s.irae_any is not None:
        data["irae_any"] = (("draw", "patient"), s.irae_any)
        data["irae_grade3plus"] = (("draw", "patient"), s.irae_3)
    return xr.Dataset(data, coords={"patient": s.ids, "time": ctx.times, "grid_time": s.grid,
                                    "draw": np.arange(s.survival.shape[0])})


