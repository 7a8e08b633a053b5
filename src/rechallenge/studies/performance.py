r"""Performance measures of a simulation study, each with its Monte Carlo standard error.

For one scenario, method and estimand, with :math:`n` replicates, estimates
:math:`\hat\theta_i` (posterior means), model SEs :math:`\widehat{SE}_i` (posterior
SDs), true values :math:`\theta_i` and errors :math:`e_i = \hat\theta_i - \theta_i`
(Morris, White & Crowther 2019, *Stat Med* 38:2074, Table 6):

=====================  ==========================================  ==================================================
measure                estimate                                    Monte Carlo SE
=====================  ==========================================  ==================================================
bias                   :math:`\bar e`                              :math:`s_e/\sqrt n`
empirical SE           :math:`s_e`                                 :math:`s_e/\sqrt{2(n-1)}`
model SE               :math:`M = \sqrt{\overline{\widehat{SE}^2}}`  :math:`\sqrt{\widehat{Var}(\widehat{SE}^2)/(4nM^2)}`
relative error, %      :math:`100(M/s_e - 1)`                      :math:`100\frac{M}{s_e}\sqrt{\frac{\widehat{Var}(\widehat{SE}^2)}{4nM^4}+\frac{1}{2(n-1)}}`
MSE                    :math:`\overline{e^2}`                      :math:`\sqrt{\sum_i (e_i^2-\overline{e^2})^2/(n(n-1))}`
RMSE                   :math:`\sqrt{MSE}`                          :math:`MCSE(MSE)/(2\,RMSE)` (delta method)
coverage (level c)     :math:`\hat p = \overline{1\{L_i\le\theta_i\le U_i\}}`  :math:`\sqrt{\hat p(1-\hat p)/n}` (at 0 or n hits: see :func:`proportion`)
interval width         :math:`\overline{U_i-L_i}`                  :math:`s_{U-L}/\sqrt n`
power / type-I error   :math:`\overline{1\{P(\theta>0\mid y_i)>0.975\}}`  binomial, as coverage
=====================  ==========================================  ==================================================

:math:`s_e` is the SD of the errors; with a true value fixed across replicates it is
Morris et al.'s empirical SE (the SD of the estimates). Intervals are equal-tailed
credible intervals. **Power** is the rate of concluding "HR > 1" (or OR > 1), defined
as a posterior probability :math:`P(\log HR > 0 \mid y) > 0.975` -- the Bayesian
analogue of a one-sided test at 2.5%, and the same event as "the lower 95% equal-tailed
limit is above 0"; under a true value of 0 the same rate is the type-I error.
``excludes_zero`` is the two-sided "95% CrI excludes 0" rate used for sample size.

Convergence failures: a fit that fails the convergence gate (R-hat > 1.01, bulk
ESS < 400 or divergences) is *kept* by default and counted in ``n_unreliable``:
dropping replicates on a data-dependent criterion would bias every measure, and in
practice an analyst would still report such a fit. ``exclude_unreliable=True`` drops
them (a sensitivity analysis). Replicates whose fit raised an error have no estimate
and are counted in ``n_failed``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
import xarray as xr

from .config import SampleSize, StudyConfig
from .replicate import LEVELS

__all__ = ["estimate_measures", "interval_measures", "proportion", "raw_dataset", "summarise",
           "summary_frame", "assurance_table", "assurance_verdict", "POWER_THRESHOLD"]

#: Posterior probability of a positive log ratio needed to conclude "ratio > 1".
POWER_THRESHOLD = 0.975


def proportion(hits: np.ndarray) -> tuple[float, float]:
    r"""Proportion of true values and its binomial Monte Carlo SE.

    :math:`\sqrt{\hat p(1-\hat p)/n}` (Morris et al. 2019), except at 0 or :math:`n`
    hits, where that is 0 and would claim a Monte Carlo-exact proportion: there the SE is
    taken at the Agresti–Coull centre :math:`\tilde p = (x + 2)/(n + 4)` (Agresti & Coull
    1998, *Am Stat* 52:119), i.e. :math:`\approx 1.4/n`.
    """
    h = np.asarray(hits, dtype=float)
    n = h.size
    if n == 0:
        return math.nan, math.nan
    x = float(h.sum())
    p = x / n
    at = p if 0 < x < n else (x + 2) / (n + 4)
    return p, math.sqrt(at * (1 - at) / n)


def estimate_measures(estimate: np.ndarray, se: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Bias, empirical SE, model SE, relative error of the model SE, MSE and RMSE, each
    with its Monte Carlo SE (see the module table). Non-finite replicates are dropped."""
    est, se, truth = (np.asarray(a, dtype=float) for a in (estimate, se, truth))
    ok = np.isfinite(est) & np.isfinite(se) & np.isfinite(truth)
    est, se, truth = est[ok], se[ok], truth[ok]
    n = est.size
    out = {"n": float(n)}
    if n < 2:
        return {**out, **{k: math.nan for k in (
            "bias", "bias_mcse", "empse", "empse_mcse", "modse", "modse_mcse", "relerr_modse",
            "relerr_modse_mcse", "mse", "mse_mcse", "rmse", "rmse_mcse")}}
    err = est - truth
    s_e = float(err.std(ddof=1))
    var_hat = se ** 2
    modse = math.sqrt(float(var_hat.mean()))
    var_var = float(var_hat.var(ddof=1))
    mse = float(np.mean(err ** 2))
    mse_mcse = math.sqrt(float(np.sum((err ** 2 - mse) ** 2)) / (n * (n - 1)))
    rmse = math.sqrt(mse)
    ratio = modse / s_e if s_e > 0 else math.nan
    out.update(
        bias=float(err.mean()), bias_mcse=s_e / math.sqrt(n),
        empse=s_e, empse_mcse=s_e / math.sqrt(2 * (n - 1)),
        modse=modse, modse_mcse=math.sqrt(var_var / (4 * n * modse ** 2)) if modse > 0 else math.nan,
        relerr_modse=100 * (ratio - 1),
        relerr_modse_mcse=100 * ratio * math.sqrt(var_var / (4 * n * modse ** 4) + 1 / (2 * (n - 1)))
        if modse > 0 else math.nan,
        mse=mse, mse_mcse=mse_mcse, rmse=rmse, rmse_mcse=mse_mcse / (2 * rmse) if rmse > 0 else math.nan)
    return out


def interval_measures(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Coverage and mean width of intervals ``[lower, upper]``, with Monte Carlo SEs."""
    lo, up, truth = (np.asarray(a, dtype=float) for a in (lower, upper, truth))
    ok = np.isfinite(lo) & np.isfinite(up) & np.isfinite(truth)
    lo, up, truth = lo[ok], up[ok], truth[ok]
    cov, cov_mcse = proportion((lo <= truth) & (truth <= up))
    width = up - lo
    n = width.size
    return {"coverage": cov, "coverage_mcse": cov_mcse,
            "width": float(width.mean()) if n else math.nan,
            "width_mcse": float(width.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan}


# --------------------------------------------------------------------------- datasets


def raw_dataset(records: Mapping[str, Mapping[str, Any]], config: StudyConfig) -> xr.Dataset:
    """Per-replicate results, dims ``scenario × method × estimand × replicate (× level)``.

    Variables: ``estimate`` (posterior mean), ``se`` (posterior SD), ``median``,
    ``truth``, ``lower``/``upper`` (equal-tailed limits per ``level``), ``p_positive``;
    per fit ``reliable``, ``failed``, ``max_rhat``, ``min_ess_bulk``, ``divergences``,
    ``n_events``, ``seconds``. Missing values are NaN.

    Select a method with a dictionary, ``raw.sel({"method": "literature"})``:
    ``raw.sel(method=...)`` is xarray's own ``method`` keyword (nearest-neighbour lookup).
    """
    scen = [s.name for s in config.all_scenarios()]
    meth = [m.name for m in config.methods]
    ests = [e.text for e in config.estimands]
    reps = list(range(config.replicates))
    shape4 = (len(scen), len(meth), len(ests), len(reps))
    shape3 = (len(scen), len(meth), len(reps))
    a4 = {k: np.full(shape4, np.nan) for k in ("estimate", "se", "median", "truth", "p_positive")}
    lim = {k: np.full(shape4 + (len(LEVELS),), np.nan) for k in ("lower", "upper")}
    a3 = {k: np.full(shape3, np.nan) for k in ("reliable", "failed", "max_rhat", "min_ess_bulk",
                                               "divergences", "n_events", "seconds")}
    index = {(s, m, r): (i, j, k) for i, s in enumerate(scen) for j, m in enumerate(meth)
             for k, r in enumerate(reps)}
    for key, rec in records.items():
        where = (rec.get("scenario"), rec.get("method"), rec.get("replicate"))
        if None in where:  # a failed task records only its key, "<scenario>/<method>/r<replicate>"
            parts = str(rec.get("key", key)).split("/")
            where = (parts[0], parts[1], int(parts[2][1:])) if len(parts) == 3 and parts[2][1:].isdigit() else where
        pos = index.get(where)
        if pos is None:
            continue
        i, j, k = pos
        a3["seconds"][i, j, k] = rec.get("seconds", np.nan)
        if rec.get("status") != "ok":
            a3["failed"][i, j, k] = 1.0
            continue
        a3["failed"][i, j, k] = 0.0
        a3["reliable"][i, j, k] = float(bool(rec.get("reliable")))
        diag = rec.get("diagnostics") or {}
        a3["max_rhat"][i, j, k] = diag.get("max_rhat", np.nan)
        a3["min_ess_bulk"][i, j, k] = diag.get("min_ess_bulk", np.nan)
        a3["divergences"][i, j, k] = diag.get("divergences", np.nan)
        a3["n_events"][i, j, k] = rec.get("n_events", np.nan)
        for e, name in enumerate(ests):
            est = (rec.get("estimates") or {}).get(name) or {}
            a4["truth"][i, j, e, k] = est.get("truth", np.nan)
            for key, src in (("estimate", "mean"), ("se", "sd"), ("median", "median"),
                             ("p_positive", "p_positive")):
                a4[key][i, j, e, k] = est.get(src, np.nan)
            if "lower" in est:
                lim["lower"][i, j, e, k] = est["lower"]
                lim["upper"][i, j, e, k] = est["upper"]
    dims4 = ("scenario", "method", "estimand", "replicate")
    data = {k: (dims4, v) for k, v in a4.items()}
    data.update({k: (dims4 + ("level",), v) for k, v in lim.items()})
    data.update({k: (("scenario", "method", "replicate"), v) for k, v in a3.items()})
    ds = xr.Dataset(data, coords={"scenario": scen, "method": meth, "estimand": ests, "replicate": reps,
                                  "level": list(LEVELS)})
    ds.attrs.update(config=json.dumps(config.to_dict(), default=str), fingerprint=config.fingerprint(),
                    aims=config.aims)
    return ds


def summarise(raw: xr.Dataset, *, exclude_unreliable: bool = False) -> xr.Dataset:
    """Performance measures with Monte Carlo SEs, dims ``scenario × method × estimand``
    (``× level`` for coverage and width); see the module docstring."""
    scen, meth, ests = (list(raw[d].values) for d in ("scenario", "method", "estimand"))
    levels = list(raw["level"].values)
    names = ("n", "bias", "bias_mcse", "empse", "empse_mcse", "modse", "modse_mcse", "relerr_modse",
             "relerr_modse_mcse", "mse", "mse_mcse", "rmse", "rmse_mcse", "power", "power_mcse",
             "excludes_zero", "excludes_zero_mcse", "true_value", "mean_estimate")
    out = {k: np.full((len(scen), len(meth), len(ests)), np.nan) for k in names}
    lev = {k: np.full((len(scen), len(meth), len(ests), len(levels)), np.nan)
           for k in ("coverage", "coverage_mcse", "width", "width_mcse")}
    fits = {k: np.zeros((len(scen), len(meth)), dtype=np.int64) for k in ("n_replicates", "n_failed", "n_unreliable")}
    i95 = levels.index(0.95) if 0.95 in levels else len(levels) - 1
    for i in range(len(scen)):
        for j in range(len(meth)):
            failed = raw["failed"].values[i, j]
            reliable = raw["reliable"].values[i, j]
            fits["n_replicates"][i, j] = int(np.sum(np.isfinite(failed)))
            fits["n_failed"][i, j] = int(np.nansum(failed))
            fits["n_unreliable"][i, j] = int(np.sum(reliable == 0))
            use = (failed == 0) & ((reliable == 1) if exclude_unreliable else True)
            for e in range(len(ests)):
                est = raw["estimate"].values[i, j, e][use]
                se = raw["se"].values[i, j, e][use]
                truth = raw["truth"].values[i, j, e][use]
                m = estimate_measures(est, se, truth)
                for k, v in m.items():
                    out[k][i, j, e] = v
                ok = np.isfinite(est) & np.isfinite(truth)
                out["true_value"][i, j, e] = np.mean(truth[ok]) if ok.any() else np.nan
                out["mean_estimate"][i, j, e] = np.mean(est[ok]) if ok.any() else np.nan
                p_pos = raw["p_positive"].values[i, j, e][use]
                p_pos = p_pos[np.isfinite(p_pos)]
                out["power"][i, j, e], out["power_mcse"][i, j, e] = proportion(p_pos > POWER_THRESHOLD)
                lo = raw["lower"].values[i, j, e][use]
                up = raw["upper"].values[i, j, e][use]
                fin = np.isfinite(lo[:, i95]) & np.isfinite(up[:, i95])
                out["excludes_zero"][i, j, e], out["excludes_zero_mcse"][i, j, e] = proportion(
                    (lo[fin, i95] > 0) | (up[fin, i95] < 0))
                for q in range(len(levels)):
                    im = interval_measures(lo[:, q], up[:, q], truth)
                    for k, v in im.items():
                        lev[k][i, j, e, q] = v
    dims = ("scenario", "method", "estimand")
    data = {k: (dims, v) for k, v in out.items()}
    data.update({k: (dims + ("level",), v) for k, v in lev.items()})
    data.update({k: (("scenario", "method"), v) for k, v in fits.items()})
    ds = xr.Dataset(data, coords={"scenario": scen, "method": meth, "estimand": ests, "level": levels})
    ds.attrs.update(raw.attrs)
    ds.attrs.update(exclude_unreliable=int(exclude_unreliable), power_threshold=POWER_THRESHOLD,
                    reference="Morris, White & Crowther (2019) Stat Med 38:2074, Table 6")
    return ds


def summary_frame(summary: xr.Dataset, level: float = 0.95) -> pd.DataFrame:
    """One row per scenario × method × estimand: the measures and their MCSEs at one
    coverage level, plus the fit counts (a tidy table for CSV and printing)."""
    flat = summary.drop_dims("level").to_dataframe()
    per_level = summary[["coverage", "coverage_mcse", "width", "width_mcse"]].sel(level=level).drop_vars("level")
    df = flat.join(per_level.to_dataframe())
    df = df.rename(columns={c: f"{c}{int(round(level * 100))}" for c in ("coverage", "coverage_mcse",
                                                                          "width", "width_mcse")})
    return df.reset_index()


def assurance_verdict(probability: float, mcse: float, target: float) -> str:
    """``reached``, ``not reached`` or ``unclear``: the estimated probability against
    ``target`` with a margin of 2 Monte Carlo SEs (see :func:`assurance_table`)."""
    if not math.isfinite(probability):
        return "unclear"
    if probability - 2 * mcse >= target:
        return "reached"
    if probability + 2 * mcse < target:
        return "not reached"
    return "unclear"


def assurance_table(raw: xr.Dataset, sample_size: SampleSize, *,
                    exclude_unreliable: bool = False) -> tuple[pd.DataFrame, int | None]:
    """P(the ``level`` CrI of the estimand excludes 0) at every cohort size of the grid.

    Returns the table (``n``, ``probability``, ``mcse``, ``replicates``, ``n_unreliable``,
    ``verdict``) and the smallest ``n`` whose estimated probability reaches ``target``
    (``None`` if none does). The estimate has Monte Carlo error, so ``verdict`` reads it
    with the MCSE: ``reached`` (probability − 2 MCSE ≥ target), ``not reached``
    (probability + 2 MCSE < target) or ``unclear`` (within 2 MCSE of the target: more
    replicates are needed to tell).
    """
    levels = list(raw["level"].values)
    if sample_size.level not in levels:
        raise ValueError(f"level {sample_size.level} not among the stored levels {levels}")
    q = levels.index(sample_size.level)
    rows = []
    for n in sample_size.n:
        name = f"{sample_size.scenario}_n{n}"
        sel = dict(scenario=name, method=sample_size.method)
        failed = raw["failed"].sel(sel).values
        reliable = raw["reliable"].sel(sel).values
        use = (failed == 0) & ((reliable == 1) if exclude_unreliable else True)
        sel["estimand"] = sample_size.estimand
        lo = raw["lower"].sel(sel).values[use, q]
        up = raw["upper"].sel(sel).values[use, q]
        fin = np.isfinite(lo) & np.isfinite(up)
        p, mcse = proportion((lo[fin] > 0) | (up[fin] < 0))
        rows.append({"n": int(n), "probability": p, "mcse": mcse, "replicates": int(fin.sum()),
                     "n_unreliable": int(np.sum(reliable == 0)),
                     "verdict": assurance_verdict(p, mcse, sample_size.target)})
    table = pd.DataFrame(rows)
    reached = table[table["probability"] >= sample_size.target]
    return table, (int(reached["n"].iloc[0]) if len(reached) else None)
