"""Prior predictive check: do the priors produce cohorts like the local one?

Before fitting (Gabry et al. 2019, *Visualization in Bayesian workflow*, JRSS A 182:389;
Gelman et al. 2020, *Bayesian workflow*, §2.4), draw the parameters from the priors
(:func:`rechallenge.prior_draws.draw_prior`), predict every patient of the local cohort
from them (:func:`rechallenge.predict.predict`: the cohort's own covariates, tumour types
and missing values), and compare

* the cohort-average PFS2 curve :math:`\\bar S_s(t) = n^{-1}\\sum_i S_{is}(t)` per prior draw
  with the observed Kaplan–Meier curve (scikit-survival), and
* the average predicted irAE recurrence probability (any grade, grade ≥ 3) with the
  observed proportions among assessed patients.

For each statistic the prior predictive 95% interval and the observed value's
percentile among the draws are reported; a percentile below 2.5% or above 97.5% says
the priors are in tension with this cohort (before the data are used to fit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .cohort import Cohort, validate_cohort
from .literature_model import PosteriorModel
from .model_data import prepare_data
from .modelspec import ModelSpec, load_spec
from .prior_draws import draw_prior
from .predict import predict
from .priors import resolve_priors

CHECK_TIMES = (3.0, 6.0, 12.0, 24.0)


@dataclass(frozen=True)
class PriorPredictiveCheck:
    """Result of :func:`prior_predictive_check`.

    ``table``: one row per statistic (``pfs2_km_<t>mo``, ``irae_any``,
    ``irae_grade3plus``) with ``observed``, ``lower``/``median``/``upper`` of the prior
    predictive, ``percentile`` of the observed value, and ``flag`` (outside the 95%
    interval). ``curves``: (draw, time) cohort-average prior predictive S(t).
    """

    table: pd.DataFrame
    times: np.ndarray
    curves: np.ndarray
    km_time: np.ndarray
    km_survival: np.ndarray

    def plot(self, ax=None):
        """Prior predictive cohort curves (50%/95% bands) and the observed Kaplan–Meier."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        q = np.quantile(self.curves, [0.025, 0.25, 0.5, 0.75, 0.975], axis=0)
        ax.fill_between(self.times, q[0], q[4], alpha=0.2, color="C0", label="prior predictive 95%")
        ax.fill_between(self.times, q[1], q[3], alpha=0.35, color="C0", label="prior predictive 50%")
        ax.plot(self.times, q[2], color="C0")
        ax.step(self.km_time, self.km_survival, where="post", color="k", label="observed (Kaplan–Meier)")
        ax.set(xlabel="months since rechallenge", ylabel="PFS2", ylim=(0, 1))
        ax.legend(frameon=False)
        return ax


def _observed_irae(cohort: Cohort) -> tuple[float, float, int]:
    y = cohort.irae_outcome() if "irae_recurrence" in cohort.data else np.full(cohort.n_patients, np.nan)
    assessed = ~np.isnan(y)
    if not assessed.any():
        return np.nan, np.nan, 0
    return float(np.mean(y[assessed] >= 1)), float(np.mean(y[assessed] >= 2)), int(assessed.sum())


def prior_predictive_check(cohort: Any, spec: Any = "literature", priors: Any = "literature", *,
                           draws: int = 1000, seed: int = 0) -> PriorPredictiveCheck:
    """Compare the local cohort with what the priors predict for it (module docstring).

    Parameters
    ----------
    cohort
        A :class:`~rechallenge.cohort.Cohort` or DataFrame with outcomes.
    spec, priors
        As in :func:`rechallenge.fit.fit`.
    draws, seed
        Prior draws and their seed.
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    spec = load_spec(spec) if not isinstance(spec, ModelSpec) else spec
    prior_set = resolve_priors(priors)
    if not isinstance(cohort, Cohort):
        cohort = validate_cohort(cohort, required=sorted(spec.required_columns()), extra=spec.extra_types)
    data = prepare_data(cohort, spec)
    posterior = draw_prior(spec, prior_set, data.levels, draws=draws, seed=seed)
    cov = cohort.covariates()
    prevalence = {n: float(cov[n].mean()) for n in dict.fromkeys(data.pfs2_names + data.irae_names)
                  if n not in data.standardisation and cov[n].notna().any()}
    model = PosteriorModel(posterior, {
        "model_spec": json.dumps(spec.to_dict()), "reliable": 1, "source": "prior predictive",
        "levels": json.dumps({k: list(v) for k, v in data.levels.items()}),
        "standardisation": json.dumps(data.standardisation), "covariate_ranges": "{}",
        "covariate_prevalence": json.dumps(prevalence)})
    patients = cohort.data.drop(columns=[c for c in ("pfs2_months", "pfs2_event", "irae_recurrence")
                                         if c in cohort.data])
    times = np.linspace(0.0, max(CHECK_TIMES[-1], float(np.quantile(data.time, 0.9))), 97)
    pred = predict(model, patients, times=np.union1d(times, CHECK_TIMES), seed=seed)
    curves = pred["survival"].mean("patient").isel(chain=0).values  # (draw, time)
    grid = pred["time"].values
    km_t, km_s = kaplan_meier_estimator(data.event.astype(bool), data.time)
    rows = []

    def add(name: str, observed: float, draws_: np.ndarray) -> None:
        lo, med, hi = np.quantile(draws_, [0.025, 0.5, 0.975])
        pct = float(np.mean(draws_ < observed) + 0.5 * np.mean(draws_ == observed))
        rows.append({"statistic": name, "observed": observed, "lower": lo, "median": med, "upper": hi,
                     "percentile": pct, "flag": bool(pct < 0.025 or pct > 0.975)})

    for t in CHECK_TIMES:
        if t > data.time.max():
            continue
        observed = float(km_s[np.searchsorted(km_t, t, side="right") - 1]) if t >= km_t[0] else 1.0
        add(f"pfs2_km_{t:g}mo", observed, curves[:, np.searchsorted(grid, t)])
    p_any, p_sev, n_assessed = _observed_irae(cohort)
    if spec.has_irae and n_assessed:
        assessed = ~np.isnan(cohort.irae_outcome())
        add("irae_any", p_any, pred["irae_any"].isel(chain=0).values[:, assessed].mean(1))
        add("irae_grade3plus", p_sev, pred["irae_grade3plus"].isel(chain=0).values[:, assessed].mean(1))
    return PriorPredictiveCheck(pd.DataFrame(rows), grid, curves, km_t, km_s)
