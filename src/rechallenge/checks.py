"""Model checks on a fit: prior–data conflict and model comparison.

Prior–data conflict, per coefficient (:func:`conflict_report`):

* **Robust-weight shift.** For a robust mixture prior
  ``p(θ) = Σ_c w_c N(θ; m_c, s_c²)`` whose last component is the vague one, the
  posterior probability of the vague component is
  ``P(vague | y) = E_{θ|y}[ w_v N(θ; m_v, s_v²) / p(θ) ]`` (the likelihood depends on
  ``θ`` only). A rise from the prior weight (e.g. 0.1 → 0.6) means the local data
  disagree with the literature (Schmidli et al. 2014).
* **Power-scaling sensitivity** (Kallioinen, Paananen, Bürkner & Vehtari 2024, *Stat
  Comput* 34:57; the R package priorsense). The prior of one coefficient, or the whole
  likelihood, is raised to a power ``α`` by importance weighting the draws
  (``log w = (α − 1) log p``, Pareto-smoothed); the sensitivity is the cumulative
  Jensen–Shannon distance between the weighted and unweighted posterior of the
  coefficient, divided by ``|log2 α|`` and averaged over ``α = 0.8`` and ``1.25``.
  Values ≥ 0.05 are flagged; prior *and* likelihood sensitivity together suggest a
  *potential* prior–data conflict (priorsense's wording: both can also be informative
  without disagreeing).

Diagnosis per coefficient: ``prior-data conflict`` when the posterior weight of a robust
prior's vague component is at least ``WEIGHT_SHIFT`` times its prior weight and at least
0.25 (a robust prior discounts itself where the data disagree, so power-scaling reacts
little there); otherwise ``potential prior-data conflict`` (both sensitivities ≥ 0.05),
``prior dominates`` (prior only), ``ok`` (likelihood only) or ``weak likelihood``.

Model comparison (:func:`compare_specifications`): PSIS-LOO on the per-patient PFS2
log-likelihood (``arviz.compare``), e.g. Weibull vs piecewise-exponential baseline.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .priorset import PriorSet

THRESHOLD = 0.05
ALPHAS = (0.8, 1.25)
WEIGHT_SHIFT = 2.5


def cjs_distance(x: np.ndarray, y: np.ndarray, wx: np.ndarray | None = None,
                 wy: np.ndarray | None = None) -> float:
    """Cumulative Jensen–Shannon distance between two weighted samples (0 = same,
    1 = disjoint), as in priorsense's ``cjs_dist`` (Nguyen & Vreeken 2015)."""
    wx = np.full(x.size, 1 / x.size) if wx is None else wx / wx.sum()
    wy = np.full(y.size, 1 / y.size) if wy is None else wy / wy.sum()
    ix, iy = np.argsort(x), np.argsort(y)
    x, wx, y, wy = x[ix], wx[ix], y[iy], wy[iy]
    dx = np.diff(np.append(x, 2 * x[-1] - x[-2]))
    dy = np.diff(np.append(y, 2 * y[-1] - y[-2]))
    cx, cy = np.cumsum(wx), np.cumsum(wy)

    def ecdf(sorted_v, cum, at):
        idx = np.searchsorted(sorted_v, at, side="right") - 1
        return np.where(idx >= 0, cum[np.clip(idx, 0, None)], 0.0)

    px, qx = ecdf(x, cx, x), ecdf(y, cy, x)
    py, qy = ecdf(x, cx, y), ecdf(y, cy, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.nan_to_num(px * (np.log2(px) - np.log2(0.5 * px + 0.5 * qx)))
        t2 = np.nan_to_num(qy * (np.log2(qy) - np.log2(0.5 * qy + 0.5 * py)))
    bound = px @ dx + qy @ dy
    return float(np.sqrt(max(dx @ t1 + dy @ t2, 0.0) / bound)) if bound > 0 else 0.0


def _psis_weights(log_w: np.ndarray) -> np.ndarray:
    import arviz as az

    lw, _ = az.psislw(log_w - log_w.max())
    return np.exp(lw)


def _sensitivity(draws: np.ndarray, log_density: np.ndarray) -> float:
    """Power-scaling sensitivity of ``draws`` to the density ``log_density``."""
    out = []
    for alpha in ALPHAS:
        w = _psis_weights((alpha - 1) * log_density)
        out.append(cjs_distance(draws, draws, wy=w) / abs(np.log2(alpha)))
    return float(np.mean(out))


def _prior_set(idata) -> PriorSet:
    return PriorSet.from_dict(json.loads(idata.attrs["prior_set"]))


def conflict_report(idata, *, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Prior–data conflict diagnostics, one row per coefficient (see module docstring).

    Columns: ``outcome``, ``parameter``, ``prior_vague_weight``,
    ``posterior_vague_weight`` (robust priors only), ``prior_sensitivity``,
    ``likelihood_sensitivity`` (needs the ``log_likelihood`` group) and ``diagnosis``.
    """
    priors = _prior_set(idata)
    post = idata.posterior
    loglik_total = None
    if "log_likelihood" in idata.groups():
        ll = idata.log_likelihood
        loglik_total = sum(ll[v].sum([d for d in ll[v].dims if d not in ("chain", "draw")])
                           for v in ll.data_vars).values.ravel()
    rows = []
    coefficients = [(outcome, str(name), idata.log_prior[var].sel({dim: name}).values.ravel(),
                     post[var].sel({dim: name}).values.ravel())
                    for var, outcome, dim in (("log_hr", "pfs2", "pfs2_covariate"),
                                              ("log_or", "irae", "irae_covariate"))
                    if var in idata.log_prior for name in idata.log_prior[dim].values]
    for outcome, name, log_prior, draws in coefficients:
        entry = priors[(outcome, name)] if (outcome, name) in priors else None
        row: dict[str, Any] = {"outcome": outcome, "parameter": name,
                               "prior_vague_weight": np.nan, "posterior_vague_weight": np.nan}
        if entry is not None and entry.robust_weight > 0:
            d = entry.distribution
            vague = d.weights[-1] * np.exp(-0.5 * ((draws - d.means[-1]) / d.sds[-1]) ** 2) \
                / (np.sqrt(2 * np.pi) * d.sds[-1])
            row["prior_vague_weight"] = float(d.weights[-1])
            row["posterior_vague_weight"] = float(np.mean(vague / d.pdf(draws)))
        row["prior_sensitivity"] = _sensitivity(draws, log_prior)
        row["likelihood_sensitivity"] = (_sensitivity(draws, loglik_total)
                                         if loglik_total is not None else np.nan)
        prior_s = row["prior_sensitivity"] >= threshold
        lik_s = bool(row["likelihood_sensitivity"] >= threshold)
        shifted = (row["posterior_vague_weight"] >= max(WEIGHT_SHIFT * row["prior_vague_weight"], 0.25))
        row["diagnosis"] = ("prior-data conflict" if shifted else
                            "potential prior-data conflict" if prior_s and lik_s else
                            "prior dominates" if prior_s else
                            "ok" if lik_s or loglik_total is None else "weak likelihood")
        rows.append(row)
    return pd.DataFrame(rows)


def compare_specifications(fits: Mapping[str, Any], *, var_name: str = "pfs2") -> pd.DataFrame:
    """PSIS-LOO comparison of fits of the same cohort (``arviz.compare``).

    ``fits`` maps a label (e.g. ``"weibull"``) to a fit with a ``log_likelihood``
    group. The table is ordered by expected log predictive density; ``elpd_diff`` and
    ``dse`` give the difference to the best model and its standard error. Fits of
    different cohorts cannot be compared (checked by patient count).
    """
    import arviz as az

    sizes = {label: int(idata.attrs["n_patients"]) for label, idata in fits.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"fits of different cohorts cannot be compared: {sizes}")
    return az.compare(dict(fits), var_name=var_name, ic="loo")
