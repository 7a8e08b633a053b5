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

Patients with identical predictors of an outcome are computed once (the PFS2 quantities
per distinct PFS2 covariates, tumour type and centre; the irAE ones per distinct irAE
covariates, tumour type and organ), a block of a few MiB of draws at a time, so memory
stays bounded (:func:`predict_summary` summarises each block of distinct patterns before
the next, never holding more than ``chunk_size`` patterns' draws).
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
import xarray as xr

from . import curves
from .errors import RechallengeError
from .loglik import irae_probabilities
from .modelspec import ModelSpec
from .order_statistics import BLOCK_ROWS, median_eti, order_statistics_block, order_work
from .predict_inputs import Patients, as_cohort, attr_json, model_spec, prepare_patients

DEFAULT_TIMES = np.round(np.arange(0.0, 36.0 + 1e-9, 0.5), 10)
MILESTONES = (6.0, 12.0)
RMST_HORIZON = 12.0
QUANTITIES = ("pfs2_median_months", "pfs2_6mo", "pfs2_12mo", "rmst_12mo", "irae_any", "irae_grade3plus")
def _stacked(posterior: xr.Dataset, name: str) -> np.ndarray:
    """Draws of a variable as ``(S, …)`` with S = chains × draws (dims chain, draw first)."""
    v = posterior.variables[name].values  # the Variable: no DataArray built per access
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
    cohort_prev = attr_json(model, "covariate_prevalence", {})
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


@dataclass(frozen=True)
class _Draws:
    """A model's draws as ``(S, …)`` arrays for one batch of patients (its new groups
    appended to the group effects) and what is needed to fill its missing values."""

    n_draws: int
    beta: np.ndarray
    u: np.ndarray
    v: np.ndarray
    baseline: curves.Baseline
    gamma: np.ndarray | None  # None: no irAE part
    w_t: np.ndarray
    o: np.ndarray
    a_any: np.ndarray | None
    b_severe: np.ndarray | None
    names: list[str]  # PFS2 then irAE covariates: the columns of the filled predictors
    n_pfs2: int
    continuous: set[str]
    prevalence: dict[str, np.ndarray]
    seed: int


def _thinned(model: Any, max_draws: int | None) -> Any:
    post = model.posterior
    if max_draws is not None and max_draws < post.sizes["chain"] * post.sizes["draw"]:
        step = int(np.ceil(post.sizes["chain"] * post.sizes["draw"] / max_draws))
        post = post.isel(draw=slice(None, None, step))
        model = type("Thinned", (), {"posterior": post, "attrs": model.attrs})()
    return model


def _draws(model: Any, spec: ModelSpec, pts: Patients, new: dict[str, list[str]], seed: int) -> _Draws:
    post = model.posterior
    n_draws = post.sizes["chain"] * post.sizes["draw"]
    has_irae = spec.has_irae and "log_or" in post
    pfs2_names = list(spec.pfs2_covariates) + [e.name for e in spec.extra]
    irae_names = list(spec.irae_covariates or ())
    continuous = {e.name for e in spec.extra if e.type == "continuous"}
    missing_names = {nm for nm, col in zip(pfs2_names, pts.x_pfs2.T) if np.isnan(col).any()} | {
        nm for nm, col in zip(irae_names, pts.x_irae.T) if np.isnan(col).any()}
    return _Draws(
        n_draws=n_draws,
        beta=_stacked(post, "log_hr") if pts.x_pfs2.shape[1] else np.zeros((n_draws, 0)),
        u=_effects(post, "tumour_effect", "sigma_tumour", new["tumour_type"], seed, n_draws),
        v=_effects(post, "centre_effect", "sigma_centre", new["centre"], seed, n_draws),
        baseline=_baseline(model, spec),
        gamma=_stacked(post, "log_or") if has_irae else None,
        w_t=_effects(post, "tumour_effect_irae", "sigma_tumour_irae", new["tumour_type"], seed, n_draws),
        o=_effects(post, "organ_effect", "sigma_organ", new["prior_irae_organ"], seed, n_draws),
        a_any=_stacked(post, "irae_a_any") if has_irae else None,
        b_severe=_stacked(post, "irae_b_severe") if has_irae else None,
        names=pfs2_names + irae_names, n_pfs2=len(pfs2_names), continuous=continuous,
        prevalence=_prevalences(model, sorted(missing_names - continuous), n_draws), seed=seed)


#: Float64 elements of one block of work arrays (draws × patients [× times]): 256 KiB,
#: so that temporaries stay in cache and are recycled by the allocator instead of being
#: fresh (page-faulted) memory each time — which costs more than the arithmetic here.
_BLOCK_ELEMENTS = 1 << 15
_CURVE_BLOCK_ELEMENTS = 1 << 17  # S(t) blocks: fewer, larger calls of curves.survival


def _patterns(x_own: np.ndarray, pts: Patients, groups: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct predictor patterns of one outcome: (first row of each, pattern of each row).

    Rows with the same covariates and groups of the outcome get the same draws, unless
    one of those covariates is missing: its values are drawn with a generator seeded by
    all the patient's covariates (:func:`_linear`), so those rows are told apart by all
    of them.
    """
    n = len(pts.ids)
    missing = np.isnan(x_own).any(axis=1) if x_own.shape[1] else np.zeros(n, dtype=bool)
    every = np.column_stack([pts.x_pfs2, pts.x_irae])
    every = np.where(missing[:, None], np.where(np.isnan(every), -999.0, every), 0.0)
    own = np.where(missing[:, None], 0.0, x_own)
    key = np.column_stack([missing.astype(float), every, own, *groups])
    # np.unique(key, axis=0, return_index=True, return_inverse=True), without its slow
    # sort of rows as structured values: one lexsort of the columns
    order = np.lexsort(key.T[::-1])
    ordered = key[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return order[starts], inverse


def _linear(dr: _Draws, pts: Patients, rows: np.ndarray, irae: bool) -> np.ndarray:
    """``x_i · coefficients`` per draw ``(S, len(rows))`` for the PFS2 (or irAE) covariates.

    Summed exactly as ``(coef * x).sum(1)`` per patient (the same reduction, so the same
    float result), a block of patients at a time; a patient with a missing covariate gets
    it drawn per draw (:func:`_fill_missing`, generator seeded by all its covariates).
    """
    coef = dr.gamma if irae else dr.beta
    x = (pts.x_irae if irae else pts.x_pfs2)[rows]
    cols = slice(dr.n_pfs2, None) if irae else slice(0, dr.n_pfs2)
    out = np.empty((dr.n_draws, len(rows)))
    missing = np.isnan(x).any(axis=1)
    complete = np.flatnonzero(~missing)
    step = max(1, _BLOCK_ELEMENTS // (dr.n_draws * max(1, x.shape[1])))
    for start in range(0, complete.size, step):
        b = complete[start:start + step]
        out[:, b] = (coef[:, None, :] * x[b][None, :, :]).sum(-1)
    for b in np.flatnonzero(missing):
        i = rows[b]
        full = np.concatenate([pts.x_pfs2[i], pts.x_irae[i]])
        rng = np.random.default_rng([dr.seed, zlib.crc32(np.where(np.isnan(full), -999.0, full).tobytes())])
        filled = _fill_missing(full, dr.names, dr.prevalence, dr.continuous, rng, dr.n_draws)
        out[:, b] = (coef * filled[:, cols]).sum(1)
    return out


def _baseline_rows(b: curves.Baseline, rows: slice) -> curves.Baseline:
    """The baseline of some draws (every parameter array has the draws first)."""
    return dataclasses.replace(b, **{f: getattr(b, f)[rows] for f in ("log_median", "log_shape", "log_hazards",
                                                                       "logit_cure") if getattr(b, f) is not None})


def _survival(dr: _Draws, eta: np.ndarray, times: np.ndarray) -> np.ndarray:
    """S(times) per draw ``(S, patients, T)`` from :func:`rechallenge.curves.survival`, a
    block of draws at a time."""
    n_draws, n = eta.shape
    out = np.empty((n_draws, n, times.size))
    step = max(1, _CURVE_BLOCK_ELEMENTS // (n * times.size))
    for start in range(0, n_draws, step):
        rows = slice(start, start + step)
        out[rows] = curves.survival(_baseline_rows(dr.baseline, rows), eta[rows], times)
    return out


def _survival_order_statistics(dr: _Draws, eta: np.ndarray, times: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Order statistics ``ranks`` over the draws of S(times): ``(patients, T, len(ranks))``,
    equal to ``np.sort(S, axis=draws)[ranks]``, without holding every draw of every curve:
    :data:`BLOCK_ROWS` times at a time (:func:`rechallenge.curves.survival_by_time`,
    :func:`rechallenge.order_statistics.order_statistics`), in buffers allocated once."""
    n_draws, n = eta.shape
    out = np.empty((n, times.size, len(ranks)))
    work = order_work(n_draws)
    for i in range(n):
        for start in range(0, times.size, BLOCK_ROWS):
            cols = slice(start, start + BLOCK_ROWS)
            block = curves.survival_by_time(dr.baseline, eta[:, i], times[cols], out=work.x[:times[cols].size])
            out[i, cols] = order_statistics_block(block, ranks, work)
    return out


def _pfs2_values(dr: _Draws, pts: Patients, rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """PFS2 quantities ``(S, len(rows))`` per draw, and the linear predictor η."""
    eta = _linear(dr, pts, rows, irae=False) + dr.u[:, pts.tumour[rows]] + dr.v[:, pts.centre[rows]]
    milestones = curves.survival(dr.baseline, eta, np.array(MILESTONES))
    values = {"pfs2_median_months": curves.quantile_time(dr.baseline, eta),
              "pfs2_6mo": milestones[..., 0], "pfs2_12mo": milestones[..., 1],
              "rmst_12mo": curves.restricted_mean(dr.baseline, eta, RMST_HORIZON)}
    return values, eta


def _irae_values(dr: _Draws, pts: Patients, rows: np.ndarray) -> dict[str, np.ndarray]:
    """irAE probabilities ``(S, len(rows))`` per draw (sequential logit)."""
    zeta = _linear(dr, pts, rows, irae=True) + dr.w_t[:, pts.tumour[rows]] + dr.o[:, pts.organ[rows]]
    p_any, p_severe = irae_probabilities(np, dr.a_any[:, None], dr.b_severe[:, None], zeta)
    return {"irae_any": p_any, "irae_grade3plus": p_severe}


def _block(n_draws: int) -> int:
    """Patients per block of work arrays."""
    return max(1, _BLOCK_ELEMENTS // max(1, n_draws))


#: Distinct patterns summarised together by :func:`predict_summary` (at most chunk_size).
_SUMMARY_PATTERNS = 64


def _compute(model: Any, spec: ModelSpec, pts: Patients, new: dict[str, list[str]], times: np.ndarray,
             seed: int, keep_curves: bool, curve_ranks: np.ndarray | None = None) -> dict[str, Any]:
    """Draws of every quantity for the distinct patterns of each outcome.

    Returns ``values`` (quantity -> ``(S, patterns)``), ``inverse`` (quantity -> pattern
    of each patient), ``curves`` — S(times) ``(S, PFS2 patterns, T)``, or with
    ``curve_ranks`` only those order statistics over the draws, ``(patterns, T, ranks)``
    — or None, ``curves_inverse``, and the draws' shape and coordinates.
    """
    post = model.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    dr = _draws(model, spec, pts, new, seed)
    first, inverse = _patterns(pts.x_pfs2, pts, (pts.tumour, pts.centre))
    values: dict[str, np.ndarray] = {}
    inverses: dict[str, np.ndarray] = {}
    pfs2 = {q: np.empty((dr.n_draws, first.size)) for q in QUANTITIES[:4]}
    eta = np.empty((dr.n_draws, first.size)) if keep_curves else None
    for part in _chunks(first.size, _block(dr.n_draws)):
        vals, eta_part = _pfs2_values(dr, pts, first[part])
        for q, v in vals.items():
            pfs2[q][:, part] = v
        if keep_curves:
            eta[:, part] = eta_part
    values.update(pfs2)
    inverses.update(dict.fromkeys(pfs2, inverse))
    if dr.gamma is not None:
        first_i, inverse_i = _patterns(pts.x_irae, pts, (pts.tumour, pts.organ))
        irae = {q: np.empty((dr.n_draws, first_i.size)) for q in QUANTITIES[4:]}
        for part in _chunks(first_i.size, _block(dr.n_draws)):
            for q, v in _irae_values(dr, pts, first_i[part]).items():
                irae[q][:, part] = v
        values.update(irae)
        inverses.update(dict.fromkeys(irae, inverse_i))
    return {"ids": pts.ids, "warnings": pts.warnings, "values": values, "inverse": inverses,
            "curves": None if not keep_curves else _survival(dr, eta, times) if curve_ranks is None
            else _survival_order_statistics(dr, eta, times, curve_ranks),
            "curves_inverse": inverse, "shape": (n_chain, n_draw),
            "horizon": float(times[-1]), "draw_coords": post["draw"].values,
            "chain_coords": post["chain"].values}


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
    times = _times(times)
    cohort = as_cohort(patients, spec)
    model = _thinned(model, max_draws)
    pts, new = prepare_patients(model, cohort, spec)
    arrays = _compute(model, spec, pts, new, times, seed, keep_curves=True)
    return _dataset(model, arrays, times)


def _times(times: Iterable[float] | None) -> np.ndarray:
    times = DEFAULT_TIMES if times is None else np.asarray(sorted(float(t) for t in times))
    if times.size == 0 or np.any(times < 0) or not np.all(np.isfinite(times)):
        raise RechallengeError("times must be finite, >= 0 and not empty")
    return times


def _dataset(model: Any, arrays: dict[str, Any], times: np.ndarray) -> xr.Dataset:
    n_chain, n_draw = arrays["shape"]
    n = len(arrays["ids"])
    data_vars = {q: (("chain", "draw", "patient"), v[:, arrays["inverse"][q]].reshape(n_chain, n_draw, n))
                 for q, v in arrays["values"].items()}
    if arrays["curves"] is not None:
        data_vars["survival"] = (("chain", "draw", "patient", "time"),
                                 arrays["curves"][:, arrays["curves_inverse"]].reshape(n_chain, n_draw, n, times.size))
    data_vars["warnings"] = (("patient",), np.array(["; ".join(w) for w in arrays["warnings"]], dtype=object))
    return xr.Dataset(data_vars, coords={"chain": arrays["chain_coords"], "draw": arrays["draw_coords"],
                                         "patient": arrays["ids"], "time": times},
                      attrs={"reliable": int(model.attrs.get("reliable", 0)),
                             "horizon_months": arrays["horizon"],
                             "source": str(model.attrs.get("source", "fit")),
                             "priors_sha256": str(model.attrs.get("priors_sha256", ""))})


def _interval(values: np.ndarray, ci: float, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed or highest-density interval of each row of ``values`` (k × draws)."""
    if kind == "eti":
        return tuple(np.quantile(values, [(1 - ci) / 2, (1 + ci) / 2], axis=-1))  # type: ignore[return-value]
    if kind != "hdi":
        raise RechallengeError(f"kind must be 'eti' or 'hdi', got {kind!r}")
    x = np.sort(values, axis=-1)
    n = x.shape[-1]
    m = max(1, int(np.ceil(ci * n)) - 1)  # index span of the shortest window of ⌈ci·n⌉ draws
    widths = x[:, m:] - x[:, : n - m]
    with np.errstate(invalid="ignore"):
        start = np.nanargmin(np.where(np.isnan(widths), np.inf, widths), axis=-1)
    rows = np.arange(x.shape[0])
    return x[rows, start], x[rows, start + m]


_NOT_REACHED = 1e300


def _summaries(values: dict[str, np.ndarray], horizon: float, ci: float, kind: str
               ) -> dict[str, dict[str, np.ndarray]]:
    """Quantity -> ``estimate`` (median), ``lower``, ``upper`` (and for the median
    ``not_reached_probability``) of each column of the ``(draws, k)`` arrays.

    Each column's draws are made contiguous first (the same values whatever the layout:
    order statistics do not depend on it, and NumPy sums a row as it sums a column);
    a few columns of all quantities are summarised together.
    """
    rows, extra = {}, {}
    for q, v in values.items():
        v = np.ascontiguousarray(v.reshape(-1, v.shape[-1]).T)
        if q == "pfs2_median_months":
            reached = np.isfinite(v) & (v <= horizon)
            v = np.where(reached, v, _NOT_REACHED)
            extra[q] = {"not_reached_probability": 1.0 - reached.mean(axis=-1)}
        rows[q] = v
    if kind != "eti":
        stats = {q: (np.median(v, axis=-1), *_interval(v, ci, kind)) for q, v in rows.items()}
    elif sum(len(v) for v in rows.values()) <= 4 * BLOCK_ROWS:
        together = median_eti(np.concatenate(list(rows.values())), ci)
        bounds = np.cumsum([0] + [len(v) for v in rows.values()])
        stats = {q: tuple(x[a:b] for x in together) for q, a, b in zip(rows, bounds[:-1], bounds[1:])}
    else:
        stats = {q: median_eti(v, ci) for q, v in rows.items()}
    out = {}
    for q, (est, lo, hi) in stats.items():
        if q == "pfs2_median_months":  # NaN = not reached
            est, lo, hi = (np.where(x <= horizon, x, np.nan) for x in (est, lo, hi))
        out[q] = {"estimate": est, "lower": lo, "upper": hi, **extra.get(q, {})}
    return out


def _summary_frame(summaries: dict[str, dict[str, np.ndarray]], ids: np.ndarray, warnings: list[str],
                   reliable: bool, ci: float, kind: str) -> pd.DataFrame:
    """The tidy table of :func:`summarise`: quantities in order, patients in order within each."""
    n = len(ids)
    columns: dict[str, Any] = {
        "patient_id": np.tile(np.asarray(ids, dtype=object), len(summaries)),
        "quantity": np.repeat(np.array(list(summaries), dtype=object), n)}
    for col in ("estimate", "lower", "upper"):
        columns[col] = np.concatenate([s[col] for s in summaries.values()])
    if any("not_reached_probability" in s for s in summaries.values()):
        columns["not_reached_probability"] = np.concatenate(
            [s.get("not_reached_probability", np.full(n, np.nan)) for s in summaries.values()])
    out = pd.DataFrame(columns)
    out["reliable"] = reliable
    out["warnings"] = np.tile(np.asarray(warnings, dtype=object), len(summaries))
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
    summaries = _summaries(values, float(pred.attrs["horizon_months"]), ci, kind)
    return _summary_frame(summaries, pred["patient"].values, list(pred["warnings"].values),
                          bool(pred.attrs["reliable"]), ci, kind)


def predict_summary(model: Any, patients: Any, *, ci: float = 0.95, kind: str = "eti",
                    horizon: float = float(DEFAULT_TIMES[-1]), seed: int = 0,
                    chunk_size: int = 2000) -> pd.DataFrame:
    """:func:`summarise` of :func:`predict` for large batches (bounded memory, no survival
    curves kept). Same numbers as ``summarise(predict(...))``.

    Patients with the same predictors of an outcome share its draws, so each outcome's
    quantities are drawn and summarised once per distinct pattern, at most
    ``chunk_size`` patterns (and a few MiB of draws) at a time.
    """
    if not 0 < ci < 1:
        raise RechallengeError(f"ci must be in (0, 1), got {ci!r}")
    spec = model_spec(model)
    cohort = as_cohort(patients, spec)
    pts, new = prepare_patients(model, cohort, spec)
    dr = _draws(model, spec, pts, new, seed)
    parts = [(_patterns(pts.x_pfs2, pts, (pts.tumour, pts.centre)),
              lambda rows: _pfs2_values(dr, pts, rows)[0])]
    if dr.gamma is not None:
        parts.append((_patterns(pts.x_irae, pts, (pts.tumour, pts.organ)),
                       lambda rows: _irae_values(dr, pts, rows)))
    summaries: dict[str, dict[str, np.ndarray]] = {}
    for (first, inverse), values in parts:
        blocks = []
        for part in _chunks(first.size, max(1, min(chunk_size, _SUMMARY_PATTERNS))):
            draws = None
            for sub in _chunks(part.stop - part.start, _block(dr.n_draws)):
                block = values(first[part][sub])
                draws = draws or {q: np.empty((dr.n_draws, part.stop - part.start)) for q in block}
                for q, v in block.items():
                    draws[q][:, sub] = v
            blocks.append(_summaries(draws, horizon, ci, kind))
        for q in blocks[0]:
            summaries[q] = {k: np.concatenate([b[q][k] for b in blocks])[inverse] for k in blocks[0][q]}
    summaries = {q: summaries[q] for q in QUANTITIES if q in summaries}
    return _summary_frame(summaries, pts.ids, ["; ".join(w) for w in pts.warnings],
                          bool(int(model.attrs.get("reliable", 0))), ci, kind)
