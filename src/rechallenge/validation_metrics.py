r"""Performance measures of one set of predictions (NumPy, scikit-survival, scikit-learn).

Every function here scores *one* prediction matrix against observed outcomes; the
posterior (a metric per draw) and the bootstrap are built on top of them in
:mod:`rechallenge.validation`. Survival outcomes are ``(time, event)`` arrays; predicted
survival ``S`` is an ``(n, T)`` matrix at ``times``; the risk of an event by ``t`` is
:math:`F(t) = 1 - S(t)` and higher risk means shorter expected survival.

Discrimination and overall accuracy are scikit-survival's own functions, called as they
are (no re-implementation):

* Harrell's C — :func:`sksurv.metrics.concordance_index_censored` on the risk score
  :math:`1 - \hat S(\tau_C)`.
* Uno's C — :func:`sksurv.metrics.concordance_index_ipcw`, inverse probability of
  censoring weights from the *training* cohort's censoring distribution, truncated at
  :math:`\tau` (Uno et al. 2011, Stat Med 30:1105).
* time-dependent cumulative/dynamic AUC — :func:`sksurv.metrics.cumulative_dynamic_auc`.
* Brier score and integrated Brier score — :func:`sksurv.metrics.brier_score`,
  :func:`sksurv.metrics.integrated_brier_score` (Graf et al. 1999, Stat Med 18:2529);
  the index of prediction accuracy :math:`\mathrm{IPA}(t) = 1 - \mathrm{BS}(t) /
  \mathrm{BS}_0(t)` uses the Kaplan–Meier null model (Kattan & Gerds 2018, Diagn Progn
  Res 2:7).

Calibration at a time point :math:`t` (Austin, Harrell & van Klaveren 2020, Stat Med
39:2714; Crowson et al. 2016, Stat Methods Med Res 25:1692):

* follow-up is administratively censored at :math:`t`, so only :math:`[0, t]` matters
  (Austin et al. fit the calibration model to the whole follow-up; censoring at
  :math:`t` needs its proportional-hazards assumption on :math:`[0, t]` only, and the two
  agree when it holds);
* **calibration slope**: the coefficient :math:`b` of a Cox model (Breslow ties) with the
  complementary log-log of the predicted risk,
  :math:`\mathrm{cll}_i = \log(-\log \hat S_i(t)) = \log \hat H_i(t)`, as the only
  covariate. For a proportional-hazards model :math:`\log H_i(t) = \log H_0(t) + \eta_i`,
  so correct predictions give :math:`b = 1`; :math:`b < 1` means predictions too extreme
  (over-fitting), :math:`b > 1` too moderate;
* **flexible calibration curve and ICI/E50/E90/Emax** (Austin & Steyerberg 2019, Stat
  Med 38:4051; Austin et al. 2020): the same Cox model with a restricted cubic spline of
  :math:`\mathrm{cll}` (3 knots at its 10th, 50th and 90th percentiles, Harrell's
  parametrisation) gives each patient's observed risk
  :math:`\tilde F_i(t) = 1 - \exp(-\tilde H_0(t)\, e^{f(\mathrm{cll}_i)})`;
  ICI is the mean of :math:`|\hat F_i(t) - \tilde F_i(t)|`, E50/E90/Emax its median,
  90th percentile and maximum. When the predictions take fewer than 5 distinct values or
  the knots coincide, the spline cannot be estimated and the linear (slope) model is used
  instead (``ici_method = "linear"``);
* **calibration-in-the-large**: :math:`O/E = (1 - \hat S_\mathrm{KM}(t)) / \overline{\hat F(t)}`;
* **grouped calibration**: Kaplan–Meier observed risk (log-log 95% interval,
  :func:`sksurv.nonparametric.kaplan_meier_estimator`) against mean predicted risk in
  quantile groups of predicted risk.

Binary outcomes (irAE recurrence, any grade and grade ≥ 3): Brier score
(:func:`sklearn.metrics.brier_score_loss`), log-loss (:func:`sklearn.metrics.log_loss`),
AUC (:func:`sklearn.metrics.roc_auc_score`), O/E, and logistic recalibration
:math:`\operatorname{logit} P(y=1) = a + b \operatorname{logit}\hat p`: slope :math:`b`,
and calibration-in-the-large :math:`a` with :math:`b` fixed at 1 (an offset) (Van Calster
et al. 2016, J Clin Epidemiol 74:167).

The two small Newton solvers (Cox partial likelihood with Breslow ties, logistic
regression with an offset) are checked against scikit-survival's
``CoxPHSurvivalAnalysis`` and scikit-learn's ``LogisticRegression`` in the tests.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit

__all__ = [
    "surv", "harrell_c", "uno_c", "td_auc", "brier", "ibs", "km", "cox_breslow", "rcs_basis",
    "survival_calibration", "grouped_survival_calibration", "logistic_fit", "binary_metrics",
    "grouped_binary_calibration",
]

_EPS = 1e-12


# --------------------------------------------------------------------------- scikit-survival wrappers


def surv(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """scikit-survival's structured outcome array (``event`` bool, ``time`` float)."""
    from sksurv.util import Surv

    return Surv.from_arrays(event=np.asarray(event).astype(bool), time=np.asarray(time, dtype=float))


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C of a risk score (higher = earlier event); ties in risk count 1/2."""
    from sksurv.metrics import concordance_index_censored

    return float(concordance_index_censored(np.asarray(event).astype(bool), np.asarray(time, float),
                                            np.asarray(risk, float))[0])


def _nan_on_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError:  # e.g. censoring distribution zero at a test time, no event: undefined
        return None


def uno_c(y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, tau: float | None) -> float:
    """Uno's IPCW C truncated at ``tau`` (censoring distribution of ``y_train``); NaN if undefined."""
    from sksurv.metrics import concordance_index_ipcw

    out = _nan_on_error(concordance_index_ipcw, y_train, y_test, np.asarray(risk, float), tau=tau)
    return float("nan") if out is None else float(out[0])


def td_auc(y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Cumulative/dynamic AUC at each time, ``risk`` ``(n, T)`` (e.g. 1 − S(t)); NaN if undefined."""
    from sksurv.metrics import cumulative_dynamic_auc

    times = np.asarray(times, float)
    out = _nan_on_error(cumulative_dynamic_auc, y_train, y_test, np.asarray(risk, float), times)
    return np.full(times.size, np.nan) if out is None else np.asarray(out[0], float)


def brier(y_train: np.ndarray, y_test: np.ndarray, surv_pred: np.ndarray, times: np.ndarray) -> np.ndarray:
    """IPCW Brier score at each time of predicted *survival* ``(n, T)``; NaN if undefined."""
    from sksurv.metrics import brier_score

    times = np.asarray(times, float)
    out = _nan_on_error(brier_score, y_train, y_test, np.asarray(surv_pred, float), times)
    return np.full(times.size, np.nan) if out is None else np.asarray(out[1], float)


def ibs(y_train: np.ndarray, y_test: np.ndarray, surv_pred: np.ndarray, grid: np.ndarray) -> float:
    """Integrated Brier score over ``grid`` (trapezoid rule divided by its length)."""
    from sksurv.metrics import integrated_brier_score

    out = _nan_on_error(integrated_brier_score, y_train, y_test, np.asarray(surv_pred, float),
                        np.asarray(grid, float))
    return float("nan") if out is None else float(out)


def km(time: np.ndarray, event: np.ndarray, at: np.ndarray, *, reverse: bool = False
       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kaplan–Meier estimate and log-log 95% interval at ``at`` (NaN beyond the last time,
    unless the estimate has reached 0 there).

    ``reverse=True`` gives the censoring distribution (reverse Kaplan–Meier).
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    time = np.asarray(time, float)
    event = np.asarray(event).astype(bool)
    at = np.atleast_1d(np.asarray(at, float))
    if reverse:
        t, s = kaplan_meier_estimator(event, time, reverse=True)
        lo = hi = np.full_like(s, np.nan)
    else:
        if not event.any():
            s_at = np.where(at <= time.max(), 1.0, np.nan)
            return s_at, s_at.copy(), s_at.copy()
        t, s, ci = kaplan_meier_estimator(event, time, conf_type="log-log")
        lo, hi = np.nan_to_num(ci[0], nan=0.0), np.nan_to_num(ci[1], nan=1.0)
    idx = np.searchsorted(t, at, side="right") - 1
    pick = lambda v: np.where(idx >= 0, v[np.maximum(idx, 0)], 1.0)  # noqa: E731
    est, lower, upper = pick(s), pick(lo), pick(hi)
    # beyond the last time the estimate is undefined, unless it has reached 0 (last time an event)
    beyond = (at > time.max()) & (s[-1] > 0)
    for arr in (est, lower, upper):
        arr[beyond] = np.nan
    return est, lower, upper


# --------------------------------------------------------------------------- Cox (Breslow) and splines


def _rcumsum(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a[::-1], axis=0)[::-1]


def cox_breslow(time: np.ndarray, event: np.ndarray, x: np.ndarray, *, max_iter: int = 50,
                tol: float = 1e-9) -> dict[str, Any] | None:
    """Unpenalised Cox regression (Breslow ties) by Newton–Raphson with step halving.

    Returns ``{"coef", "center", "cumhaz"}`` where ``cumhaz(t)`` is the Breslow baseline
    cumulative hazard at the covariate means (``center``), so that
    :math:`H(t \\mid x) = H_0(t) \\exp((x - \\bar x)^\\top b)`; ``None`` when there is
    no event or Newton does not converge (e.g. monotone likelihood).
    """
    time = np.asarray(time, float)
    event = np.asarray(event).astype(bool)
    x = np.asarray(x, float).reshape(time.size, -1)
    if not event.any() or not np.all(np.isfinite(x)):
        return None
    center = x.mean(axis=0)
    order = np.argsort(time, kind="mergesort")
    t, e, xs = time[order], event[order], x[order] - center
    ev_times, d = np.unique(t[e], return_counts=True)
    start = np.searchsorted(t, ev_times, side="left")
    sum_x_events = xs[e].sum(axis=0)
    outer = xs[:, :, None] * xs[:, None, :]

    def terms(beta):
        lp = xs @ beta
        w = np.exp(lp)
        s0 = _rcumsum(w)[start]
        s1 = _rcumsum(w[:, None] * xs)[start]
        loglik = float(lp[e].sum() - (d * np.log(s0)).sum())
        return loglik, w, s0, s1

    beta = np.zeros(xs.shape[1])
    loglik, w, s0, s1 = terms(beta)
    converged = False
    for _ in range(max_iter):
        s2 = _rcumsum(w[:, None, None] * outer)[start]
        mean = s1 / s0[:, None]
        grad = sum_x_events - (d[:, None] * mean).sum(axis=0)
        info = (d[:, None, None] * (s2 / s0[:, None, None] - mean[:, :, None] * mean[:, None, :])).sum(axis=0)
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            return None
        for _half in range(30):
            new = terms(beta + step)
            if np.isfinite(new[0]) and new[0] >= loglik - 1e-9 * (1.0 + abs(loglik)):
                break
            step = step / 2
        else:
            return None
        beta = beta + step
        loglik, w, s0, s1 = new
        if np.max(np.abs(step)) < tol:
            converged = True
            break
    if not converged or np.any(np.abs(beta) > 50):
        return None
    increments = d / s0

    def cumhaz(at: float) -> float:
        return float(increments[ev_times <= at].sum())

    return {"coef": beta, "center": center, "cumhaz": cumhaz, "loglik": loglik}


def rcs_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Restricted cubic spline basis (Harrell's parametrisation): ``x`` then K − 2 cubic terms.

    Linear beyond the outer knots; each cubic term is divided by
    :math:`(t_K - t_1)^2` (as ``rms::rcspline.eval`` with ``norm=2``).
    """
    x = np.asarray(x, float)
    k = np.asarray(knots, float)
    n_k = k.size
    cols = [x]
    scale = (k[-1] - k[0]) ** 2
    pos = lambda v: np.maximum(v, 0.0) ** 3  # noqa: E731
    for j in range(n_k - 2):
        term = (pos(x - k[j]) - pos(x - k[-2]) * (k[-1] - k[j]) / (k[-1] - k[-2])
                + pos(x - k[-1]) * (k[-2] - k[j]) / (k[-1] - k[-2]))
        cols.append(term / scale)
    return np.column_stack(cols)


def _cll(surv_t: np.ndarray) -> np.ndarray:
    s = np.clip(np.asarray(surv_t, float), _EPS, 1 - _EPS)
    return np.log(-np.log(s))


def survival_calibration(time: np.ndarray, event: np.ndarray, surv_t: np.ndarray, t: float, *,
                         curve_risk: np.ndarray | None = None) -> dict[str, Any]:
    """Calibration of predicted survival at one time ``t`` (see the module docstring).

    Parameters
    ----------
    time, event
        Observed follow-up and event indicator.
    surv_t
        Predicted :math:`\\hat S_i(t)`.
    t
        The time point (follow-up is censored at ``t``).
    curve_risk
        Predicted risks at which to evaluate the flexible calibration curve.

    Returns
    -------
    dict
        ``slope``, ``oe``, ``ici``, ``e50``, ``e90``, ``emax``, ``ici_method``
        (``"rcs3"`` or ``"linear"``) and ``curve`` (observed risk at ``curve_risk``);
        NaN where undefined (no event before ``t``).
    """
    time = np.asarray(time, float)
    event = np.asarray(event).astype(bool)
    surv_t = np.asarray(surv_t, float)
    risk = 1.0 - surv_t
    t_cens = np.minimum(time, t)
    e_cens = event & (time <= t)
    out: dict[str, Any] = dict(slope=np.nan, oe=np.nan, ici=np.nan, e50=np.nan, e90=np.nan, emax=np.nan,
                               ici_method="none",
                               curve=None if curve_risk is None else np.full(np.size(curve_risk), np.nan))
    observed_km = km(time, event, [t])[0][0]
    out["oe"] = float((1.0 - observed_km) / risk.mean()) if risk.mean() > 0 else np.nan
    cll = _cll(surv_t)
    linear = cox_breslow(t_cens, e_cens, cll[:, None])
    if linear is None:
        return out
    out["slope"] = float(linear["coef"][0])
    knots = np.quantile(cll, [0.1, 0.5, 0.9])
    flexible = None
    if np.unique(cll).size >= 5 and np.all(np.diff(knots) > 1e-8 * max(1.0, np.ptp(cll))):
        flexible = cox_breslow(t_cens, e_cens, rcs_basis(cll, knots))
    model, basis = (flexible, lambda v: rcs_basis(v, knots)) if flexible is not None else (
        linear, lambda v: np.asarray(v, float)[:, None])
    out["ici_method"] = "rcs3" if flexible is not None else "linear"
    h0 = model["cumhaz"](t)

    def observed(cll_values):
        lp = (basis(cll_values) - model["center"]) @ model["coef"]
        return 1.0 - np.exp(-h0 * np.exp(lp))

    diff = np.abs(risk - observed(cll))
    out.update(ici=float(diff.mean()), e50=float(np.median(diff)), e90=float(np.quantile(diff, 0.9)),
               emax=float(diff.max()))
    if curve_risk is not None:
        out["curve"] = observed(_cll(1.0 - np.asarray(curve_risk, float)))
    return out


def _quantile_groups(score: np.ndarray, n_groups: int) -> np.ndarray:
    """Group index (0 = lowest) of quantile groups of ``score``; tied values share a group,
    and with at most ``n_groups`` distinct values each value is a group."""
    distinct = np.unique(score)
    if distinct.size <= n_groups:
        return np.searchsorted(distinct, score)
    codes = pd.qcut(pd.Series(score).rank(method="min"), q=n_groups, labels=False, duplicates="drop")
    return np.asarray(codes, dtype=int)


def grouped_survival_calibration(time: np.ndarray, event: np.ndarray, risk_draws: np.ndarray,
                                 risk_mean: np.ndarray, t: float, n_groups: int = 5) -> pd.DataFrame:
    """Observed (Kaplan–Meier) vs predicted risk by ``t`` in quantile groups of ``risk_mean``.

    ``risk_draws`` ``(S, n)`` gives the predicted group mean's 95% posterior interval.
    Columns: ``time``, ``group``, ``n``, ``events`` (by ``t``), ``predicted``
    (mean of ``risk_mean``), ``predicted_lower``/``upper``, ``observed`` (1 − KM),
    ``observed_lower``/``upper`` (log-log 95%).
    """
    time = np.asarray(time, float)
    event = np.asarray(event).astype(bool)
    groups = _quantile_groups(risk_mean, n_groups)
    rows = []
    for g in np.unique(groups):
        m = groups == g
        s, lo, hi = km(time[m], event[m], [t])
        per_draw = risk_draws[:, m].mean(axis=1)
        rows.append({"time": float(t), "group": int(g) + 1, "n": int(m.sum()),
                     "events": int((event[m] & (time[m] <= t)).sum()),
                     "predicted": float(risk_mean[m].mean()),
                     "predicted_lower": float(np.quantile(per_draw, 0.025)),
                     "predicted_upper": float(np.quantile(per_draw, 0.975)),
                     "observed": float(1 - s[0]), "observed_lower": float(1 - hi[0]),
                     "observed_upper": float(1 - lo[0])})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- binary outcomes


def logistic_fit(x: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None, *, max_iter: int = 100,
                 tol: float = 1e-10) -> np.ndarray:
    """Maximum-likelihood logistic regression (an intercept is added) with an optional offset.

    Returns ``[intercept, coefficients...]``; NaN when Newton does not converge
    (e.g. separation).
    """
    y = np.asarray(y, float)
    x = np.asarray(x, float).reshape(y.size, -1)
    design = np.column_stack([np.ones(y.size), x])
    off = np.zeros(y.size) if offset is None else np.asarray(offset, float)
    beta = np.zeros(design.shape[1])
    for _ in range(max_iter):
        p = expit(design @ beta + off)
        w = p * (1 - p)
        info = design.T @ (design * w[:, None])
        try:
            step = np.linalg.solve(info, design.T @ (y - p))
        except np.linalg.LinAlgError:
            break
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            return beta if np.all(np.abs(beta) < 50) else np.full_like(beta, np.nan)
    return np.full(design.shape[1], np.nan)


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Brier score, log-loss, AUC, O/E, calibration intercept (offset logit p) and slope."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, float), _EPS, 1 - _EPS)
    both = 0 < y.sum() < y.size
    lp = logit(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        intercept = logistic_fit(np.zeros((y.size, 0)), y, offset=lp)[0] if both else np.nan
        slope = logistic_fit(lp, y)[1] if both else np.nan
    return {"brier": float(brier_score_loss(y, p)),
            "log_loss": float(log_loss(y, p, labels=[0, 1])),
            "auc": float(roc_auc_score(y, p)) if both else np.nan,
            "oe": float(y.mean() / p.mean()),
            "cal_intercept": float(intercept), "cal_slope": float(slope)}


def grouped_binary_calibration(y: np.ndarray, p_draws: np.ndarray, p_mean: np.ndarray,
                               n_groups: int = 5) -> pd.DataFrame:
    """Observed proportion (Wilson 95% interval) vs mean predicted probability by quantile group."""
    from scipy.stats import norm

    y = np.asarray(y).astype(int)
    groups = _quantile_groups(p_mean, n_groups)
    z = norm.ppf(0.975)
    rows = []
    for g in np.unique(groups):
        m = groups == g
        n, k = int(m.sum()), int(y[m].sum())
        phat = k / n
        centre = (phat + z ** 2 / (2 * n)) / (1 + z ** 2 / n)
        half = z * np.sqrt(phat * (1 - phat) / n + z ** 2 / (4 * n ** 2)) / (1 + z ** 2 / n)
        per_draw = p_draws[:, m].mean(axis=1)
        rows.append({"group": int(g) + 1, "n": n, "events": k, "predicted": float(p_mean[m].mean()),
                     "predicted_lower": float(np.quantile(per_draw, 0.025)),
                     "predicted_upper": float(np.quantile(per_draw, 0.975)),
                     "observed": phat, "observed_lower": float(max(0.0, centre - half)),
                     "observed_upper": float(min(1.0, centre + half))})
    return pd.DataFrame(rows)
