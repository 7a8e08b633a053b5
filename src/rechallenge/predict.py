r"""Per-patient predictions from posterior draws: NumPy/xarray only, no PyMC.

For each posterior draw :math:`s` and patient :math:`i`,
:math:`\eta_{is} = x_i^\top\beta_s + u_{s,\mathrm{tumour}(i)} (+ v_{s,\mathrm{centre}(i)})`
and :math:`\zeta_{is} = z_i^\top\gamma_s + w_{s,\mathrm{tumour}(i)} + o_{s,\mathrm{organ}(i)}`;
the PFS2 curve, its median, 6- and 12-month values and the restricted mean to 12 months
follow in closed form (:mod:`rechallenge.curves`), the irAE probabilities from the
sequential logit (:func:`rechallenge.loglik.irae_probabilities`).

* A tumour type, centre or organ not in the fit is a **new group**: its effect is drawn,
  per posterior draw, from :math:`N(0, \sigma_s^2)` (one draw per unseen level, seeded).
* A **missing covariate** is averaged over its distribution: in each posterior draw it
  is drawn from that distribution — a binary covariate as Bernoulli(p) with its
  prevalence (the fit's posterior prevalence when the fit imputed it, else its mean in
  the fitted cohort; the literature model uses the package's default covariate
  distributions), a continuous ``extra`` as :math:`N(0, 1)` on the standardised scale.
  The predictive distribution is the mixture over the covariate's values, and its
  interval includes not knowing the value.
* Numeric inputs outside the fitted cohort's range give a warning in the output, and
  predictions from an unreliable fit carry ``reliable = False``.

Patients with identical predictors are computed once, and patients are processed in
chunks, so memory stays bounded (:func:`predict_summary` never holds more than one
chunk of draws).
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
import xarray as xr

from . import curves
from .cohort import Cohort, read_cohort, validate_cohort
from .errors import RechallengeError
from .loglik import irae_probabilities
from .modelspec import ModelSpec, spec_from_dict

DEFAULT_TIMES = np.round(np.arange(0.0, 36.0 + 1e-9, 0.5), 10)
MILESTONES = (6.0, 12.0)
RMST_HORIZON = 12.0
QUANTITIES = ("pfs2_median_months", "pfs2_6mo", "pfs2_12mo", "rmst_12mo", "irae_any", "irae_grade3plus")
#: Plain-language names of covariates that can be missing, for warnings.
MISSING_LABELS = {"ecog_ge2": "ECOG performance status", "pfs1_lt6": "PFS1 (first-course PFS)",
                  "tfi_le6": "treatment-free interval", "liver_mets": "liver metastases",
                  "nlr": "NLR (neutrophil-to-lymphocyte ratio)"}
_PATTERN_COLUMNS = ("tumour_type", "centre", "prior_irae_organ")


@dataclass(frozen=True)
class _Patients:
    """Predictor arrays of the distinct patients of a batch (NaN = missing)."""

    ids: np.ndarray
    x_pfs2: np.ndarray
    x_irae: np.ndarray
    tumour: np.ndarray
    centre: np.ndarray
    organ: np.ndarray
    warnings: list[list[str]]


def _attr_json(model: Any, key: str, default: Any) -> Any:
    value = model.attrs.get(key)
    return default if value is None else json.loads(value)


def model_spec(model: Any) -> ModelSpec:
    """The specification a fit (or the literature model) was made with."""
    return spec_from_dict(json.loads(model.attrs["model_spec"]))


def _as_cohort(patients: Any, spec: ModelSpec) -> Cohort:
    required = sorted(spec.required_columns())
    if isinstance(patients, Cohort):
        return patients
    if isinstance(patients, pd.DataFrame):
        df = patients.copy()
        if "patient_id" not in df:
            df.insert(0, "patient_id", [f"patient_{i + 1}" for i in range(len(df))])
        return validate_cohort(df, required=required, extra=spec.extra_types, outcomes=False,
                               source="<patients>")
    return read_cohort(patients, required=required, extra=spec.extra_types, outcomes=False)


def _group_codes(values: Iterable[str], levels: list[str], label: str, warnings: list[list[str]]
                 ) -> tuple[np.ndarray, list[str]]:
    """Index of each value in ``levels``; unseen values get new indices after them."""
    lookup = {v: i for i, v in enumerate(levels)}
    new: list[str] = []
    codes = []
    for i, v in enumerate(values):
        if v not in lookup:
            lookup[v] = len(levels) + len(new)
            new.append(v)
        if lookup[v] >= len(levels):
            warnings[i].append(f"{label} {v!r} is not in the fit: a new group drawn from the "
                               "group-level distribution (wider interval)")
        codes.append(lookup[v])
    return np.asarray(codes, dtype=np.int64), new


def _prepare(model: Any, cohort: Cohort, spec: ModelSpec) -> tuple[_Patients, dict[str, list[str]]]:
    data = cohort.data
    n = len(data)
    warnings: list[list[str]] = [[] for _ in range(n)]
    standardisation = _attr_json(model, "standardisation", {})
    cov = cohort.covariates()
    pfs2_names = list(spec.pfs2_covariates) + [e.name for e in spec.extra]
    irae_names = list(spec.irae_covariates or ())
    x_cov = pd.DataFrame(index=cov.index)
    for name in dict.fromkeys(pfs2_names + irae_names):
        col = cov[name].astype(float)
        if name in standardisation:
            mean, sd = standardisation[name]
            col = (col - mean) / sd
        x_cov[name] = col
    ranges = _attr_json(model, "covariate_ranges", {})
    for column, (lo, hi) in ranges.items():
        if column in data:
            for i, v in enumerate(data[column].astype(float)):
                if np.isfinite(v) and not lo <= v <= hi:
                    warnings[i].append(f"{column} = {v:g} is outside the fitted cohort's range "
                                       f"[{lo:g}, {hi:g}]: extrapolation")
    for name in dict.fromkeys(pfs2_names + irae_names):
        label = MISSING_LABELS.get(name, name)
        for i in np.flatnonzero(x_cov[name].isna().to_numpy()):
            warnings[i].append(f"{label} is missing: averaged over its distribution (wider interval)")
    levels = {k: list(v) for k, v in _attr_json(model, "levels", {}).items()}
    tumour_values = data["tumour_type"].astype(str) if "tumour_type" in data else pd.Series(["all"] * n)
    tumour, new_t = _group_codes(tumour_values, levels.get("tumour_type", ["all"]), "tumour type", warnings)
    if "centre" in spec.pfs2_groups and "centre" in data:
        keys = tumour_values + "/" + data["centre"].astype(str)
        centre, new_c = _group_codes(keys, levels.get("centre", ["all"]), "centre", warnings)
    else:
        centre, new_c = np.zeros(n, dtype=np.int64), []
    if spec.has_irae and "prior_irae_organ" in (spec.irae_groups or ()):
        organ, new_o = _group_codes(data["prior_irae_organ"].astype(str), levels.get("prior_irae_organ", ["all"]),
                                    "prior irAE organ", warnings)
    else:
        organ, new_o = np.zeros(n, dtype=np.int64), []
    patients = _Patients(
        ids=data["patient_id"].astype(str).to_numpy(),
        x_pfs2=x_cov[pfs2_names].to_numpy(dtype=float) if pfs2_names else np.zeros((n, 0)),
        x_irae=x_cov[irae_names].to_numpy(dtype=float) if irae_names else np.zeros((n, 0)),
        tumour=tumour, centre=centre, organ=organ, warnings=warnings)
    return patients, {"tumour_type": new_t, "centre": new_c, "prior_irae_organ": new_o}


def _stacked(posterior: xr.Dataset, name: str) -> np.ndarray:
    """Draws of a variable as ``(S, …)`` with S = chains × draws."""
    v = posterior[name].values
    return v.reshape((-1,) + v.shape[2:])


def _effects(posterior: xr.Dataset, effect: str, sigma: str, new: list[str], seed: int,
             n_draws: int) -> np.ndarray:
    """Group effects ``(S, levels + new)``: fitted levels, then draws for unseen levels.

    Each unseen level has its own generator seeded by (seed, effect, level), so a level
    gets the same draws whichever other patients are predicted with it.
    """
    if effect not in posterior:
        return np.zeros((n_draws, 1 + len(new)))
    fitted = _stacked(posterior, effect)
    z = [np.random.default_rng([seed, zlib.crc32(f"{effect}/{name}".encode())]).standard_normal(n_draws)
         for name in new]
    draws = _stacked(posterior, sigma)[:, None] * np.array(z).reshape(len(new), n_draws).T
    return np.concatenate([fitted, draws], axis=1)


def _fill_missing(x: np.ndarray, names: list[str], prevalence: dict[str, np.ndarray],
                  continuous: set[str], rng: np.random.Generator, n_draws: int) -> np.ndarray:
    """One patient's predictors per draw ``(S, P)``, missing values drawn per draw.

    A missing binary covariate is Bernoulli(p_s) with the draw's prevalence, a missing
    continuous (standardised) one N(0, 1): the predictive distribution is then the
    mixture over the covariate's distribution, so the interval includes not knowing it.
    """
    filled = np.repeat(x[None, :], n_draws, axis=0)
    for j in np.flatnonzero(np.isnan(x)):
        if names[j] in continuous:
            filled[:, j] = rng.standard_normal(n_draws)
        else:
            filled[:, j] = (rng.random(n_draws) < prevalence[names[j]]).astype(float)
    return filled


def _prevalences(model: Any, names: Iterable[str], n_draws: int) -> dict[str, np.ndarray]:
    post = model.posterior
    cohort_prev = _attr_json(model, "covariate_prevalence", {})
    out = {}
    for name in names:
        if "prevalence" in post and name in post["imputed_covariate"].values:
            out[name] = _stacked(post, "prevalence")[:, list(post["imputed_covariate"].values).index(name)]
        elif name in cohort_prev:
            out[name] = np.full(n_draws, float(cohort_prev[name]))
        else:
            raise RechallengeError(f"{name} is missing and the model has no prevalence for it; "
                                   "give its value")
    return out


def _baseline(model: Any, spec: ModelSpec) -> curves.Baseline:
    post = model.posterior
    cure = _stacked(post, "logit_cure")[:, None] if "logit_cure" in post else None
    if spec.baseline == "weibull":
        return curves.Baseline("weibull", log_median=_stacked(post, "log_median")[:, None],
                               log_shape=_stacked(post, "log_shape")[:, None], logit_cure=cure)
    edges = np.concatenate([[0.0], np.asarray(spec.cuts, dtype=float), [np.inf]])
    return curves.Baseline("piecewise", log_hazards=_stacked(post, "log_hazard")[:, None, :],
                           edges=edges, logit_cure=cure)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def predict(model: Any, patients: Any, times: Iterable[float] | None = None, *, seed: int = 0,
            max_draws: int | None = None) -> xr.Dataset:
    """Posterior predictive PFS2 curve and irAE recurrence probabilities per patient.

    Parameters
    ----------
    model
        A fit (``InferenceData`` from :func:`rechallenge.fit.fit` or
        :func:`rechallenge.fitio.load`) or :func:`rechallenge.literature_model.literature_model`.
    patients
        DataFrame, :class:`~rechallenge.cohort.Cohort` or CSV path with the cohort
        contract's columns (outcomes absent); blanks in imputable columns are averaged over.
    times
        Months at which to evaluate S(t) (default 0 to 36 by 0.5); the median is "not
        reached" in a draw when it exceeds the last time (the horizon).
    seed
        Seed for new-group draws (same seed, same numbers).
    max_draws
        Use only the first draws (thinned evenly) — for quick looks.

    Returns
    -------
    xarray.Dataset
        ``survival`` (chain, draw, patient, time); per draw and patient
        ``pfs2_median_months`` (inf when S never reaches 0.5), ``pfs2_6mo``, ``pfs2_12mo``,
        ``rmst_12mo``, ``irae_any``, ``irae_grade3plus``; ``warnings`` (patient) text;
        attrs ``reliable``, ``horizon_months``, ``source``.
    """
    spec = model_spec(model)
    times = DEFAULT_TIMES if times is None else np.asarray(sorted(float(t) for t in times))
    if times.size == 0 or np.any(times < 0) or not np.all(np.isfinite(times)):
        raise RechallengeError("times must be finite, >= 0 and not empty")
    cohort = _as_cohort(patients, spec)
    arrays = _compute(model, spec, cohort, times, seed, max_draws, keep_curves=True)
    return _dataset(model, arrays, times)


def _compute(model: Any, spec: ModelSpec, cohort: Cohort, times: np.ndarray, seed: int,
             max_draws: int | None, keep_curves: bool) -> dict[str, Any]:
    post = model.posterior
    if max_draws is not None and max_draws < post.sizes["chain"] * post.sizes["draw"]:
        step = int(np.ceil(post.sizes["chain"] * post.sizes["draw"] / max_draws))
        post = post.isel(draw=slice(None, None, step))
        model = type("Thinned", (), {"posterior": post, "attrs": model.attrs})()
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    n_draws = n_chain * n_draw
    pts, new = _prepare(model, cohort, spec)
    u = _effects(post, "tumour_effect", "sigma_tumour", new["tumour_type"], seed, n_draws)
    v = _effects(post, "centre_effect", "sigma_centre", new["centre"], seed, n_draws)
    w_t = _effects(post, "tumour_effect_irae", "sigma_tumour_irae", new["tumour_type"], seed, n_draws)
    o = _effects(post, "organ_effect", "sigma_organ", new["prior_irae_organ"], seed, n_draws)
    beta = _stacked(post, "log_hr") if pts.x_pfs2.shape[1] else np.zeros((n_draws, 0))
    has_irae = spec.has_irae and "log_or" in post
    gamma = _stacked(post, "log_or") if has_irae else None
    baseline = _baseline(model, spec)
    a_any = _stacked(post, "irae_a_any") if has_irae else None
    b_severe = _stacked(post, "irae_b_severe") if has_irae else None
    horizon = float(times[-1])
    pfs2_names = list(spec.pfs2_covariates) + [e.name for e in spec.extra]
    irae_names = list(spec.irae_covariates or ())
    continuous = {e.name for e in spec.extra if e.type == "continuous"}
    missing_names = {nm for nm, col in zip(pfs2_names, pts.x_pfs2.T) if np.isnan(col).any()} | {
        nm for nm, col in zip(irae_names, pts.x_irae.T) if np.isnan(col).any()}
    prevalence = _prevalences(model, sorted(missing_names - continuous), n_draws)

    # distinct predictor patterns: computed once
    key = np.column_stack([pts.x_pfs2, pts.x_irae, pts.tumour, pts.centre, pts.organ])
    key = np.where(np.isnan(key), -999.0, key)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    n_u = len(first)
    out = {q: np.empty((n_draws, n_u)) for q in QUANTITIES if has_irae or not q.startswith("irae")}
    curves_u = np.empty((n_draws, n_u, times.size)) if keep_curves else None
    for k, i in enumerate(first):
        x = np.concatenate([pts.x_pfs2[i], pts.x_irae[i]])
        rng = np.random.default_rng([seed, zlib.crc32(np.where(np.isnan(x), -999.0, x).tobytes())])
        filled = _fill_missing(x, pfs2_names + irae_names, prevalence, continuous, rng, n_draws)
        xp, xi = filled[:, :len(pfs2_names)], filled[:, len(pfs2_names):]
        eta = ((beta * xp).sum(1) + u[:, pts.tumour[i]] + v[:, pts.centre[i]])[:, None]  # (S, 1)
        if keep_curves:
            curves_u[:, k] = curves.survival(baseline, eta, times)[:, 0]
        milestones = curves.survival(baseline, eta, np.array(MILESTONES))[:, 0]
        out["pfs2_6mo"][:, k], out["pfs2_12mo"][:, k] = milestones[:, 0], milestones[:, 1]
        out["rmst_12mo"][:, k] = curves.restricted_mean(baseline, eta, RMST_HORIZON)[:, 0]
        out["pfs2_median_months"][:, k] = curves.quantile_time(baseline, eta)[:, 0]
        if has_irae:
            zeta = (gamma * xi).sum(1) + w_t[:, pts.tumour[i]] + o[:, pts.organ[i]]
            out["irae_any"][:, k], out["irae_grade3plus"][:, k] = irae_probabilities(
                np, a_any, b_severe, zeta)
    return {"ids": pts.ids, "warnings": pts.warnings, "inverse": inverse, "values": out,
            "curves": curves_u, "shape": (n_chain, n_draw), "horizon": horizon,
            "draw_coords": post["draw"].values, "chain_coords": post["chain"].values}


def _dataset(model: Any, arrays: dict[str, Any], times: np.ndarray) -> xr.Dataset:
    n_chain, n_draw = arrays["shape"]
    inv = arrays["inverse"]
    n = inv.size
    data_vars = {q: (("chain", "draw", "patient"), v[:, inv].reshape(n_chain, n_draw, n))
                 for q, v in arrays["values"].items()}
    if arrays["curves"] is not None:
        data_vars["survival"] = (("chain", "draw", "patient", "time"),
                                 arrays["curves"][:, inv].reshape(n_chain, n_draw, n, times.size))
    data_vars["warnings"] = (("patient",), np.array(["; ".join(w) for w in arrays["warnings"]], dtype=object))
    return xr.Dataset(data_vars, coords={"chain": arrays["chain_coords"], "draw": arrays["draw_coords"],
                                         "patient": arrays["ids"], "time": times},
                      attrs={"reliable": int(model.attrs.get("reliable", 0)),
                             "horizon_months": arrays["horizon"],
                             "source": str(model.attrs.get("source", "fit")),
                             "priors_sha256": str(model.attrs.get("priors_sha256", ""))})


def _interval(values: np.ndarray, ci: float, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed or highest-density interval per column of ``values`` (draws × k)."""
    if kind == "eti":
        return tuple(np.quantile(values, [(1 - ci) / 2, (1 + ci) / 2], axis=0))  # type: ignore[return-value]
    if kind != "hdi":
        raise RechallengeError(f"kind must be 'eti' or 'hdi', got {kind!r}")
    x = np.sort(values, axis=0)
    n = x.shape[0]
    m = max(1, int(np.ceil(ci * n)) - 1)  # index span of the shortest window of ⌈ci·n⌉ draws
    widths = x[m:] - x[: n - m]
    with np.errstate(invalid="ignore"):
        start = np.nanargmin(np.where(np.isnan(widths), np.inf, widths), axis=0)
    cols = np.arange(x.shape[1])
    return x[start, cols], x[start + m, cols]


_NOT_REACHED = 1e300


def _summary_frame(values: dict[str, np.ndarray], ids: np.ndarray, warnings: list[str], horizon: float,
                   reliable: bool, ci: float, kind: str) -> pd.DataFrame:
    frames = []
    for q, v in values.items():
        v = v.reshape(-1, v.shape[-1])
        extra = {}
        if q == "pfs2_median_months":
            reached = np.isfinite(v) & (v <= horizon)
            v = np.where(reached, v, _NOT_REACHED)
            extra["not_reached_probability"] = 1.0 - reached.mean(axis=0)
        est = np.median(v, axis=0)
        lo, hi = _interval(v, ci, kind)
        frame = pd.DataFrame({"patient_id": ids, "quantity": q, "estimate": est, "lower": lo, "upper": hi,
                              **extra})
        if q == "pfs2_median_months":
            for col in ("estimate", "lower", "upper"):
                frame[col] = frame[col].where(frame[col] <= horizon)  # NaN = not reached
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["reliable"] = reliable
    out["warnings"] = np.tile(np.asarray(warnings, dtype=object), len(values))
    out["ci"], out["interval"] = ci, kind
    return out


def summarise(pred: xr.Dataset, ci: float = 0.95, kind: str = "eti") -> pd.DataFrame:
    """Tidy summary of :func:`predict`: one row per patient and quantity.

    Columns ``patient_id``, ``quantity`` (``pfs2_median_months``, ``pfs2_6mo``,
    ``pfs2_12mo``, ``rmst_12mo``, ``irae_any``, ``irae_grade3plus``), ``estimate``
    (posterior median), ``lower``/``upper`` (central (``"eti"``) or highest-density
    (``"hdi"``) interval of mass ``ci``), ``not_reached_probability`` (median only:
    posterior probability that the median lies beyond the horizon; estimate or limits
    beyond it are NaN = "not reached"), ``reliable``, ``warnings``.
    """
    if not 0 < ci < 1:
        raise RechallengeError(f"ci must be in (0, 1), got {ci!r}")
    values = {q: pred[q].transpose("chain", "draw", "patient").values.reshape(-1, pred.sizes["patient"])
              for q in QUANTITIES if q in pred}
    return _summary_frame(values, pred["patient"].values, list(pred["warnings"].values),
                          float(pred.attrs["horizon_months"]), bool(pred.attrs["reliable"]), ci, kind)


def predict_summary(model: Any, patients: Any, *, ci: float = 0.95, kind: str = "eti",
                    horizon: float = float(DEFAULT_TIMES[-1]), seed: int = 0,
                    chunk_size: int = 2000) -> pd.DataFrame:
    """:func:`summarise` of :func:`predict` for large batches, chunk by chunk (bounded memory,
    no survival curves kept). Same numbers as ``summarise(predict(...))``."""
    if not 0 < ci < 1:
        raise RechallengeError(f"ci must be in (0, 1), got {ci!r}")
    spec = model_spec(model)
    cohort = _as_cohort(patients, spec)
    frames = []
    for part in _chunks(cohort.n_patients, chunk_size):
        sub = dataclasses.replace(cohort, data=cohort.data.iloc[part].reset_index(drop=True))
        arrays = _compute(model, spec, sub, np.array([horizon]), seed, None, keep_curves=False)
        values = {q: v[:, arrays["inverse"]] for q, v in arrays["values"].items()}
        frames.append(_summary_frame(values, arrays["ids"], ["; ".join(w) for w in arrays["warnings"]],
                                     horizon, bool(int(model.attrs.get("reliable", 0))), ci, kind))
    out = pd.concat(frames, ignore_index=True)
    order = {q: i for i, q in enumerate(QUANTITIES)}
    return out.sort_values(["quantity", "patient_id"], key=lambda s: s.map(order) if s.name == "quantity"
                           else s.map({p: i for i, p in enumerate(cohort.data["patient_id"].astype(str))})
                           ).reset_index(drop=True)
