r"""Validate a fitted model on held-out or cross-validated data (TRIPOD items 10d, 16).

:func:`validate` scores a fit (or the literature model) on a test cohort with observed
outcomes; :func:`cross_validate` fits *k* models through :func:`rechallenge.fit.fit`
(folds stratified by the PFS2 event), predicts each held-out fold and scores the pooled
held-out predictions. Both return a :class:`ValidationResult`.

What is computed (the measures and their references are in
:mod:`rechallenge.validation_metrics`):

* **discrimination** — Harrell's C and Uno's C (truncated at :math:`\tau`, default the
  last validation time) of the risk score :math:`1 - \hat S_i(\tau_C)`
  (:math:`\tau_C` = the last validation time), cumulative/dynamic AUC at each time;
* **calibration** at each time (default 6 and 12 months) — calibration slope (Cox
  regression on :math:`\log(-\log \hat S_i(t))`), O/E, ICI/E50/E90/Emax from a
  restricted-cubic-spline Cox calibration model, Kaplan–Meier observed vs predicted risk
  in quantile groups;
* **overall** — Brier score at each time, index of prediction accuracy (IPA, against the
  Kaplan–Meier null model), integrated Brier score over a grid;
* **irAE recurrence** (any grade, grade ≥ 3; assessed patients only) — Brier, log-loss,
  AUC, O/E, logistic calibration intercept and slope, grouped calibration;
* **posterior predictive check** — the cohort-average predicted :math:`\bar S(t)` per
  draw against the Kaplan–Meier curve and its 95% interval;
* **PSIS-LOO** (:func:`arviz.loo`) of the fitting cohort, with Pareto :math:`\hat k` per
  patient, when the model carries a ``log_likelihood`` group.

Three kinds of number, kept apart:

``value``
    the metric of the Bayesian point prediction, the posterior mean
    :math:`\hat S_i(t) = E_\theta[S(t \mid x_i, \theta)]` (and mean irAE probabilities) —
    the number to report;
``posterior_*``
    median and 95% interval of the metric computed draw by draw on a random subset of
    ``n_draws`` posterior draws: how much the metric moves with parameter uncertainty.
    It is *not* a confidence interval: it ignores the sampling variability of the test set;
``boot_*``
    95% percentile interval over ``n_boot`` bootstrap resamples of the test patients of the
    point prediction's metric (censoring weights from the training cohort held fixed): the
    sampling uncertainty TRIPOD asks for. For cross-validation the folds' fits are not
    repeated inside the bootstrap, so the interval is somewhat too narrow.

The censoring distribution for the IPCW measures (Uno's C, AUC, Brier, IBS) is the
Kaplan–Meier estimate of the training cohort when given (``train_cohort``; for
cross-validation the whole cohort), else of the test cohort.

Limits: the predictive check's band is the posterior of the cohort-average curve
(parameter uncertainty), not a replicated-data interval, so on a small test set the
Kaplan–Meier curve can leave it by sampling noise alone — compare with the Kaplan–Meier
interval (``km_ci_covers_median``). Not computed yet: the held-out log predictive density
of cross-validation (an elpd comparable to PSIS-LOO) and decision-curve analysis.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import xarray as xr

from . import validation_metrics as vm
from .cohort import Cohort, read_cohort, validate_cohort
from .errors import RechallengeError
from .modelspec import ModelSpec
from .validation_scoring import METRICS, Scored, check_times, context, evaluate, grids

__all__ = ["ValidationResult", "validate", "cross_validate", "loo_table"]

# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class ValidationResult:
    """Validation metrics of a model on held-out data.

    Attributes
    ----------
    metrics
        Metric per posterior draw: dims ``draw``, ``time`` (validation times, months),
        ``irae_outcome`` (``irae_any``, ``irae_grade3plus``).
    point
        The same metrics of the posterior-mean prediction (no ``draw`` dim).
    bootstrap
        The point prediction's metrics per bootstrap resample (dim ``replicate``), or None.
    summary
        Tidy table: ``metric``, ``outcome``, ``time``, ``value``, ``posterior_median``,
        ``posterior_lower``, ``posterior_upper``, ``boot_lower``, ``boot_upper``.
    calibration
        Grouped survival calibration (see
        :func:`rechallenge.validation_metrics.grouped_survival_calibration`).
    calibration_curves
        Flexible calibration curves: ``predicted`` (time, point), ``observed`` (point
        prediction) and ``observed_draws`` (draw, time, point).
    irae_calibration
        Grouped irAE calibration with an ``outcome`` column (empty without irAE).
    ppc
        ``predicted`` (draw, ppc_time): cohort-average predicted S(t); ``km``,
        ``km_lower``, ``km_upper``; attrs ``band_covers_km`` (fraction of times at which
        the Kaplan–Meier estimate lies in the 95% posterior band) and
        ``km_ci_covers_median`` (fraction at which the posterior median lies in the
        Kaplan–Meier 95% interval).
    predictions
        The scored predictions: ``survival`` (draw, patient, time), ``survival_mean``
        (patient, grid_time), ``risk_score`` (patient; the score of the C-indices),
        ``observed_time``, ``observed_event``, irAE probabilities and outcome, ``fold``.
    loo
        ``{outcome: arviz ELPDData}`` of the fitting cohort (empty if no log-likelihood).
    pareto_k
        Pareto :math:`\\hat k` and pointwise elpd per patient and outcome of the fitting
        cohort (:func:`loo_table`), or None.
    info
        Validation type, sizes, events, missing data, settings, fit reliability.
    """

    metrics: xr.Dataset
    point: xr.Dataset
    bootstrap: xr.Dataset | None
    summary: pd.DataFrame
    calibration: pd.DataFrame
    calibration_curves: xr.Dataset
    irae_calibration: pd.DataFrame
    ppc: xr.Dataset
    predictions: xr.Dataset
    loo: dict[str, Any] = field(default_factory=dict)
    pareto_k: pd.DataFrame | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def tripod_table(self, digits: int = 3) -> pd.DataFrame:
        """TRIPOD-style performance table (Collins et al. 2015, items 13, 14, 16).

        Rows: participants (n, events, median follow-up, missing values per column),
        discrimination, calibration, overall performance, irAE recurrence and PSIS-LOO.
        Columns ``section``, ``measure``, ``time``, ``estimate`` (of the posterior-mean
        prediction), ``posterior_95`` (interval over posterior draws), ``bootstrap_95``
        (over resampled test patients) and ``display`` ("estimate (bootstrap interval)").
        """
        return tripod_table(self, digits)

    def plot_calibration(self, time: float | None = None, ax=None):
        """Calibration plot at ``time`` (default every validation time); returns the Figure."""
        from .validation_plots import plot_calibration

        return plot_calibration(self, time=time, ax=ax)

    def plot_ppc_km(self, ax=None):
        """Cohort-average predicted PFS2 (posterior band) against Kaplan–Meier; returns the Figure."""
        from .validation_plots import plot_ppc_km

        return plot_ppc_km(self, ax=ax)

    def plot_irae_calibration(self, outcome: str = "irae_any", ax=None):
        """Observed vs predicted irAE recurrence by group; returns the Figure."""
        from .validation_plots import plot_irae_calibration

        return plot_irae_calibration(self, outcome=outcome, ax=ax)


# --------------------------------------------------------------------------- inputs


def _outcome_cohort(cohort: Any, spec: ModelSpec, label: str) -> Cohort:
    """A cohort with PFS2 outcomes, validated against the specification."""
    required = sorted(spec.required_columns())
    if isinstance(cohort, Cohort):
        out = cohort
    elif isinstance(cohort, pd.DataFrame):
        out = validate_cohort(cohort, required=required, extra=spec.extra_types, source=f"<{label}>")
    else:
        out = read_cohort(cohort, required=required, extra=spec.extra_types)
    missing = {"pfs2_months", "pfs2_event"} - set(out.data.columns)
    if missing:
        raise RechallengeError(f"the {label} cohort needs the PFS2 outcome columns {sorted(missing)}")
    return out


def _subset_draws(model: Any, n_draws: int, seed: int):
    """A random subset of ``n_draws`` posterior draws as a one-chain posterior model, and the
    chosen draws' indices in the flattened (chain-major) posterior."""
    from .literature_model import PosteriorModel

    post = model.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    total = n_chain * n_draw
    if n_draws < 1:
        raise RechallengeError(f"n_draws must be >= 1, got {n_draws}")
    flat = np.sort(np.random.default_rng(seed).choice(total, size=min(n_draws, total), replace=False))
    sub = post.isel(chain=xr.DataArray(flat // n_draw, dims="sample"),
                    draw=xr.DataArray(flat % n_draw, dims="sample"))
    sub = sub.drop_vars(["chain", "draw"], errors="ignore").rename({"sample": "draw"})
    sub = sub.assign_coords(draw=np.arange(flat.size))
    sub = sub.expand_dims(chain=[0]).transpose("chain", "draw", ...)
    return PosteriorModel(sub, dict(model.attrs)), flat


# --------------------------------------------------------------------------- LOO and description


def loo_table(model: Any) -> tuple[dict[str, Any], pd.DataFrame]:
    """PSIS-LOO (:func:`arviz.loo`, pointwise) of each outcome in a fit's ``log_likelihood``.

    irAE log-likelihood columns that are zero in every draw (patients without an assessed
    outcome) are left out. Returns ``({outcome: ELPDData}, table)`` with one row per
    patient and outcome: ``patient``, ``outcome``, ``pareto_k``, ``elpd_loo``.
    """
    import arviz as az

    groups = model.groups() if hasattr(model, "groups") else []
    if "log_likelihood" not in groups:
        return {}, pd.DataFrame(columns=["patient", "outcome", "pareto_k", "elpd_loo"])
    out, frames = {}, []
    for var in model.log_likelihood.data_vars:
        ll = model.log_likelihood[var]
        dim = [d for d in ll.dims if d not in ("chain", "draw")][0]
        keep = (ll != 0).any(("chain", "draw")).values
        ll = ll.isel({dim: np.flatnonzero(keep)})
        if ll.sizes[dim] == 0:
            continue
        idata = az.InferenceData(posterior=model.posterior, log_likelihood=xr.Dataset({var: ll}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = az.loo(idata, var_name=var, pointwise=True)
        out[var] = res
        frames.append(pd.DataFrame({"patient": ll[dim].values, "outcome": var,
                                    "pareto_k": np.asarray(res.pareto_k), "elpd_loo": np.asarray(res.loo_i)}))
    return out, pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _describe(cohort: Cohort) -> dict[str, Any]:
    d = cohort.data
    time, event = d["pfs2_months"].to_numpy(float), d["pfs2_event"].to_numpy(int)
    # median follow-up: reverse Kaplan-Meier (Schemper & Smith 1996)
    from sksurv.nonparametric import kaplan_meier_estimator

    t, s = kaplan_meier_estimator(event.astype(bool), time, reverse=True)
    below = np.flatnonzero(s <= 0.5)
    missing = cohort.missing_report()
    return {"n": int(len(d)), "events": int(event.sum()),
            "median_follow_up_months": float(t[below[0]]) if below.size else float("nan"),
            "missing": {c: int(v) for c, v in missing["n_missing"].items()}}


# --------------------------------------------------------------------------- public API


def _unpack(pred: xr.Dataset, has_irae: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    surv = pred["survival"].transpose("chain", "draw", "patient", "time").values
    surv = surv.reshape((-1,) + surv.shape[2:])
    if not has_irae or "irae_any" not in pred:
        return surv, None, None
    flat = lambda v: pred[v].transpose("chain", "draw", "patient").values.reshape(surv.shape[0], -1)  # noqa: E731
    return surv, flat("irae_any"), flat("irae_grade3plus")


def validate(model_or_idata: Any, test_cohort: Any, *, train_cohort: Any = None,
             times: Iterable[float] = (6.0, 12.0), n_draws: int = 200, n_boot: int = 200,
             n_groups: int = 5, ibs_grid: Iterable[float] | None = None, tau: float | None = None,
             seed: int = 0) -> ValidationResult:
    """Validate a model on a cohort with observed outcomes (external or temporal validation).

    Parameters
    ----------
    model_or_idata
        A fit (``InferenceData`` or the path of a saved fit) or the literature model.
    test_cohort
        DataFrame, :class:`~rechallenge.cohort.Cohort` or CSV path with the covariates of
        the model's specification and the outcomes (``pfs2_months``, ``pfs2_event``;
        ``irae_recurrence`` for the irAE metrics).
    train_cohort
        The fitting cohort: its censoring distribution weights the IPCW measures and its
        Kaplan–Meier curve is the null model of the IPA (default: the test cohort).
    times
        Months at which AUC, Brier score and calibration are computed (within the test
        follow-up); the last is also the horizon of the C-indices' risk score and of
        Uno's C (``tau``) and the end of the default IBS grid.
    n_draws
        Random posterior draws on which every metric is computed (its posterior).
    n_boot
        Bootstrap resamples of the test patients for the point prediction (0: none).
    n_groups
        Quantile groups of predicted risk for grouped calibration.
    ibs_grid
        Times of the integrated Brier score (default: 25 points from the 10th percentile
        of the test follow-up times to the last of ``times``).
    tau
        Truncation time of Uno's C (default: the last of ``times``).
    seed
        Seeds the draw subset, new-group effects in prediction and the bootstrap.

    Returns
    -------
    ValidationResult
    """
    from .fitio import load
    from .predict import model_spec, predict

    if isinstance(model_or_idata, (str, Path)):
        model_or_idata = load(model_or_idata)
    spec = model_spec(model_or_idata)
    test = _outcome_cohort(test_cohort, spec, "test")
    train = None if train_cohort is None else _outcome_cohort(train_cohort, spec, "training")
    time = test.data["pfs2_months"].to_numpy(float)
    event = test.data["pfs2_event"].to_numpy(int).astype(bool)
    times_arr = check_times(times, time)
    ibs, ppc_times, grid = grids(time, times_arr, ibs_grid)
    ref = train if train is not None else test
    y_train = vm.surv(ref.data["pfs2_months"].to_numpy(float), ref.data["pfs2_event"].to_numpy(int))
    ctx = context(y_train, times_arr, ibs, grid, tau)
    reliable = bool(int(model_or_idata.attrs.get("reliable", 0)))
    if not reliable:
        from .fit import UnreliableFitWarning

        warnings.warn("validating an UNRELIABLE fit (convergence gate failed): its metrics describe "
                      "draws that may not represent the posterior", UnreliableFitWarning, stacklevel=2)
    sub, chosen = _subset_draws(model_or_idata, n_draws, seed)
    pred = predict(sub, test, times=grid, seed=seed)
    surv, p_any, p_3 = _unpack(pred, spec.has_irae)
    scored = Scored(ids=pred["patient"].values, time=time, event=event, irae=test.irae_outcome(),
                     grid=grid, survival=surv, irae_any=p_any, irae_3=p_3,
                     fold=np.full(time.size, -1), reliable=reliable)
    info = {"validation": "held-out cohort" + (" (censoring weights from the training cohort)" if train is not None
                                               else " (censoring weights from the test cohort)"),
            "source": str(model_or_idata.attrs.get("source", "fit")), "test": _describe(test),
            "train": None if train is None else _describe(train), "seed": seed,
            "draw_indices": chosen.tolist()}
    result = ValidationResult(**evaluate(scored, ctx, ppc_times, n_boot=n_boot, n_groups=n_groups, seed=seed,
                                                 info=info))
    loo, pareto = loo_table(model_or_idata)
    if loo:
        result.info["loo"] = {k: {"elpd_loo": float(v.elpd_loo), "se": float(v.se), "p_loo": float(v.p_loo),
                                  "n_k_gt_0.7": int((np.asarray(v.pareto_k) > 0.7).sum()),
                                  "max_k": float(np.max(v.pareto_k))} for k, v in loo.items()}
    return dataclasses.replace(result, loo=loo, pareto_k=pareto if loo else None)


def cross_validate(cohort: Any, k: int = 5, *, spec: Any = "literature", priors: Any = "literature",
                   fit_kwargs: Mapping[str, Any] | None = None, times: Iterable[float] = (6.0, 12.0),
                   n_draws: int = 200, n_boot: int = 200, n_groups: int = 5,
                   ibs_grid: Iterable[float] | None = None, tau: float | None = None,
                   seed: int = 0) -> ValidationResult:
    """k-fold cross-validation: fit on k − 1 folds, predict the held-out fold, score the pool.

    Folds are stratified by the PFS2 event (:class:`sklearn.model_selection.StratifiedKFold`,
    shuffled with ``seed``). Each fold is fitted by :func:`rechallenge.fit.fit`
    (``fit_kwargs``, default ``draws=500, tune=500, chains=2``, no log-likelihood; fold
    *j* uses seed ``seed + j``), which reuses its compiled model across folds of the same
    structure. ``n_draws`` random draws of each fold's posterior predict its held-out
    patients; draw *s* of the pooled predictions joins draw *s* of every fold. The
    censoring distribution is that of the whole cohort. Other arguments as
    :func:`validate`.
    """
    from sklearn.model_selection import StratifiedKFold

    from .fit import fit
    from .modelspec import load_spec
    from .predict import predict

    spec_obj = load_spec(spec)
    full = _outcome_cohort(cohort, spec_obj, "cross-validation")
    time = full.data["pfs2_months"].to_numpy(float)
    event = full.data["pfs2_event"].to_numpy(int).astype(bool)
    if int(k) != k or not 2 <= k <= event.sum():
        raise RechallengeError(f"k must be an integer from 2 to the number of events ({int(event.sum())}), "
                               f"got {k!r}")
    times_arr = check_times(times, time)
    ibs, ppc_times, grid = grids(time, times_arr, ibs_grid)
    ctx = context(vm.surv(time, event), times_arr, ibs, grid, tau)
    clash = {"seed", "spec", "priors", "cohort"} & set(fit_kwargs or {})
    if clash:
        raise RechallengeError(f"fit_kwargs may not set {sorted(clash)}: cross_validate sets them "
                               "(fold j is fitted with seed + j)")
    kwargs = {"draws": 500, "tune": 500, "chains": 2, "progressbar": False, "log_likelihood": False,
              **dict(fit_kwargs or {})}
    n = time.size
    fold = np.full(n, -1)
    surv = p_any = p_3 = None
    reliable, fold_info = [], []
    splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), event)
    for j, (train_idx, test_idx) in enumerate(splits):
        part = lambda idx: dataclasses.replace(full, data=full.data.iloc[idx].reset_index(drop=True))  # noqa: E731
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            idata = fit(part(train_idx), spec_obj, priors, seed=seed + j, **kwargs)
        for w in caught:
            if not issubclass(w.category, UserWarning) or "UNRELIABLE" not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        ok = bool(int(idata.attrs.get("reliable", 0)))
        reliable.append(ok)
        fold_info.append({"fold": j, "n_train": int(train_idx.size), "n_test": int(test_idx.size),
                          "reliable": ok, "diagnostics": json.loads(idata.attrs.get("diagnostics", "{}"))})
        sub, chosen = _subset_draws(idata, n_draws, seed + j)
        fold_info[-1]["draw_indices"] = chosen.tolist()
        pred = predict(sub, part(test_idx), times=grid, seed=seed)
        s_j, a_j, b_j = _unpack(pred, spec_obj.has_irae)
        if surv is None:
            surv = np.empty((s_j.shape[0], n, grid.size))
            if a_j is not None:
                p_any, p_3 = np.empty((s_j.shape[0], n)), np.empty((s_j.shape[0], n))
        m = min(surv.shape[0], s_j.shape[0])
        surv = surv[:m]
        surv[:, test_idx] = s_j[:m]
        if a_j is not None:
            p_any, p_3 = p_any[:m], p_3[:m]
            p_any[:, test_idx], p_3[:, test_idx] = a_j[:m], b_j[:m]
        fold[test_idx] = j
    if not all(reliable):
        from .fit import UnreliableFitWarning

        warnings.warn(f"{k - sum(reliable)} of {k} fold fits failed the convergence gate: the "
                      "cross-validated metrics use unreliable fits", UnreliableFitWarning, stacklevel=2)
    scored = Scored(ids=full.data["patient_id"].astype(str).to_numpy(), time=time, event=event,
                     irae=full.irae_outcome(), grid=grid, survival=surv, irae_any=p_any, irae_3=p_3,
                     fold=fold, reliable=all(reliable))
    info = {"validation": f"{k}-fold cross-validation (stratified by event)", "source": "cross-validation",
            "test": _describe(full), "train": None, "seed": seed, "folds": fold_info,
            "fit_kwargs": {key: v for key, v in kwargs.items() if key != "progressbar"}}
    return ValidationResult(**evaluate(scored, ctx, ppc_times, n_boot=n_boot, n_groups=n_groups, seed=seed,
                                       info=info))


# --------------------------------------------------------------------------- TRIPOD table


def _fmt(x: float, digits: int) -> str:
    return "" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _interval(lo: float, hi: float, digits: int) -> str:
    return "" if not (np.isfinite(lo) and np.isfinite(hi)) else f"{lo:.{digits}f} to {hi:.{digits}f}"


def tripod_table(result: ValidationResult, digits: int = 3) -> pd.DataFrame:
    """See :meth:`ValidationResult.tripod_table`."""
    info = result.info
    rows: list[dict[str, Any]] = []

    def add(section, measure, estimate="", time=np.nan, posterior="", boot="", note=""):
        rows.append({"section": section, "measure": measure, "time": time, "estimate": estimate,
                     "posterior_95": posterior, "bootstrap_95": boot, "note": note})

    test = info["test"]
    add("Validation", "type", info["validation"], note=f"source: {info['source']}")
    add("Validation", "fit passed the convergence gate", "yes" if info["reliable"] else "NO")
    add("Participants", "patients", str(test["n"]))
    add("Participants", "PFS2 events", str(test["events"]))
    add("Participants", "median follow-up (reverse Kaplan-Meier), months",
        _fmt(test["median_follow_up_months"], 1))
    for column, count in test["missing"].items():
        add("Participants", f"missing {column}", f"{count} ({100 * count / test['n']:.1f}%)",
            note="averaged over its distribution in prediction")
    if info.get("irae_assessed"):
        add("Participants", "irAE outcome assessed", str(info["irae_assessed"]))
        add("Participants", "irAE recurrence, any grade", str(info["irae_any_events"]))
        add("Participants", "irAE recurrence, grade >= 3", str(info["irae_grade3plus_events"]))
    notes = {"harrell_c": f"risk score 1 - S({info['c_index_risk_time']:g})",
             "uno_c": f"truncated at tau = {info['uno_tau']:g} months",
             "ibs": "over [{:.2f}, {:g}] months".format(*info["ibs_range"]),
             "ici": "restricted cubic spline Cox calibration model (Austin et al. 2020)",
             "cal_slope": "1 = ideal; < 1 predictions too extreme"}
    for _, r in result.summary.iterrows():
        section, label = METRICS[r["metric"]]
        if r["outcome"] != "pfs2":
            label = f"{label}, {'any grade' if r['outcome'] == 'irae_any' else 'grade >= 3'}"
        add(section, label, _fmt(r["value"], digits), time=r["time"],
            posterior=_interval(r["posterior_lower"], r["posterior_upper"], digits),
            boot=_interval(r["boot_lower"], r["boot_upper"], digits), note=notes.get(r["metric"], ""))
    for outcome, loo in info.get("loo", {}).items():
        add("Model fit (fitting cohort)", f"PSIS-LOO elpd, {outcome}", _fmt(loo["elpd_loo"], 1),
            note=f"SE {loo['se']:.1f}, p_loo {loo['p_loo']:.1f}, {loo['n_k_gt_0.7']} Pareto k > 0.7 "
                 f"(max {loo['max_k']:.2f})")
    out = pd.DataFrame(rows)
    out["display"] = [f"{e} ({b})" if b else e for e, b in zip(out["estimate"], out["bootstrap_95"])]
    return out
