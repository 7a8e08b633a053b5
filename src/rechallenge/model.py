"""The PyMC graph: hierarchical PFS2 survival + irAE recurrence, priors from a PriorSet.

This module only *builds* the model (fitting, prediction and summaries live
elsewhere). Equations (see :mod:`rechallenge.loglik` for the likelihoods)::

    η_i  = Σ_j β_j x_ij + u[tumour_i] (+ v[tumour_i/centre_i])         PFS2 log-hazard
    ζ_i  = Σ_j γ_j z_ij + w[tumour_i] + o[organ_i]                    irAE log-odds
    β_j  ~ PriorSet("pfs2", j)   (log HR ``log_hr``; mixtures where the prior is robust)
    γ_j  ~ PriorSet("irae", j)   (log OR ``log_or``)
    log m ~ PriorSet baseline_median, log k ~ PriorSet weibull_shape (Weibull baseline)
    logit π ~ PriorSet cure_fraction (cure-fraction models)
    u ~ N(0, σ_t²), σ_t ~ HalfNormal(PriorSet sigma_tumour_type); v ~ N(0, σ_c²) …
    a ~ PriorSet baseline_any; b ~ N(·) moment-matched to logit(P(≥3)/P(any)) under the
        PriorSet baseline probabilities (sequential logit, see loglik)
    p_j ~ Beta(1, 1): prevalence of each binary covariate with missing values

Group intercepts use the centred form for groups with at least
``spec.centred_min_patients`` patients and the non-centred form otherwise (the choice is
data, so the compiled graph does not depend on it); for the irAE
part the threshold is ``IRAE_INFORMATION_RATIO`` times higher, because a patient's
ordinal outcome carries about p(1 − p) ≈ 1/4 of the information of a PFS2 event.
Piecewise-exponential baseline: log h_1 ~ N(log ln 2 − E[log m], sd[log m]² + 0.5²),
log h_{j+1} − log h_j ~ N(0, 0.5²) (a judgement: the hazard rarely changes more than
e^{±1} between adjacent intervals). The priors' NumPy side (densities, draws) is
:mod:`rechallenge.prior_draws`.

All data enter through ``pm.Data`` so that a compiled model can be refitted on new data
of the same structure (:mod:`rechallenge.fit`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from . import loglik
from .mixture import NormalMixture, stack_mixtures
from .model_data import ModelData
from .prior_draws import GROUP_EFFECTS, RW_SD, coefficient_priors, piecewise_baseline_prior, severe_given_any_prior
from .priorset import PriorEntry, PriorSet

IRAE_INFORMATION_RATIO = 4
#: Data names of each group effect: (group index, centred flags, events per group).
GROUP_INPUTS = {"tumour_effect": ("tumour_idx", "tumour_centred", "events_tumour"),
                "centre_effect": ("centre_idx", "centre_centred", "events_centre"),
                "tumour_effect_irae": ("tumour_idx", "tumour_irae_centred", None),
                "organ_effect": ("organ_idx", "organ_centred", None)}


def _prior_rv(name: str, entry: PriorEntry, **kwargs: Any):
    """A PyMC random variable with the PriorSet distribution of one entry."""
    if entry.measure == "group_sd":
        return pm.HalfNormal(name, sigma=entry.halfnormal_scale, **kwargs)
    d = entry.distribution
    if d.n_components == 1:
        return pm.Normal(name, mu=float(d.means[0]), sigma=float(d.sds[0]), **kwargs)
    return pm.NormalMixture(name, w=d.weights, mu=d.means, sigma=d.sds, **kwargs)


def _coefficients(name: str, mixtures: list[NormalMixture], dim: str):
    """One vector random variable for all coefficients of an outcome (one graph node).

    Priors with different numbers of components are padded exactly
    (:func:`rechallenge.mixture.stack_mixtures`).
    """
    if not mixtures:
        return pt.zeros(0)
    w, mu, sd = stack_mixtures(mixtures)
    if w.shape[1] == 1:
        return pm.Normal(name, mu=mu[:, 0], sigma=sd[:, 0], dims=dim)
    return pm.NormalMixture(name, w=w, mu=mu, sigma=sd, dims=dim)


def _group_effect(name: str, dim: str, centred, sigma):
    """Group intercepts, centred or non-centred per group as the data say.

    ``centred`` is 0/1 data per group: ``z_g ~ N(0, s_g²)`` with ``s_g = σ`` (centred)
    or 1 (non-centred), and the effect is ``z_g σ / s_g``. The form is data, not graph
    structure, so one compiled model serves cohorts of any size.
    """
    scale = pt.switch(centred, sigma, 1.0)
    z = pm.Normal(f"{name}_z", 0.0, scale, dims=dim)
    return pm.Deterministic(name, z * sigma / scale, dims=dim)


def centring(data: ModelData, group: str, threshold: int) -> np.ndarray:
    """1.0 for groups with at least ``threshold`` patients (centred form), else 0.0."""
    return (data.group_sizes(group) >= threshold).astype(float)


def centring_flags(data: ModelData) -> dict[str, np.ndarray]:
    """The centred-form flags of every group effect, by data name (``tumour_centred``, …):
    :func:`centring` at ``spec.centred_min_patients``, times ``IRAE_INFORMATION_RATIO`` for
    the irAE groups."""
    threshold = data.spec.centred_min_patients
    ratio = {"pfs2": 1, "irae": IRAE_INFORMATION_RATIO}
    return {GROUP_INPUTS[effect][1]: centring(data, dim, ratio[outcome] * threshold)
            for _, outcome, _, effect, dim in GROUP_EFFECTS}


def has_centred_group(data: ModelData) -> bool:
    """Whether any group effect of the specification takes the centred form for this cohort."""
    spec = data.spec
    used = {"pfs2": spec.pfs2_groups, "irae": spec.irae_groups if spec.has_irae else ()}
    flags = centring_flags(data)
    return any(flags[GROUP_INPUTS[effect][1]].any()
               for _, outcome, _, effect, dim in GROUP_EFFECTS if dim in used[outcome])


def uses_sufficient_statistics(data: ModelData) -> bool:
    """Whether the PFS2 likelihood takes its fast form (see :func:`build_model`)."""
    spec = data.spec
    return (not data.expanded and spec.baseline == "weibull" and not spec.cure_fraction
            and not data.continuous_missing)


def model_inputs(data: ModelData) -> dict[str, np.ndarray]:
    """Every ``pm.Data`` array of the model, by name (NumPy only).

    The one list of the model's data: :func:`build_model` declares them and a compiled
    model is refitted by swapping them (:mod:`rechallenge.fit`). Besides the per-patient
    arrays it holds event-weighted sums (``Σ d``, ``Σ d x``, ``Σ d log t``, events per
    group) for the sufficient-statistic form of the Weibull likelihood, and the irAE
    outcomes aggregated by predictor pattern.
    """
    out = {"time": data.time, "event": data.event, "rows_patient": data.rows_patient,
           "x_pfs2": data.x_pfs2, "tumour_idx": data.tumour_idx, "centre_idx": data.centre_idx,
           "exposure": data.exposure, "interval_idx": data.interval,
           "x_irae": data.x_irae, "y_irae_onehot": data.y_irae_onehot, "organ_idx": data.organ_idx,
           "row_imputed": data.row_imputed, "row_value": data.row_value, "first_row": data.first_row,
           **centring_flags(data)}
    if uses_sufficient_statistics(data):
        d = data.event
        out.update({
            "log_time": np.log(data.time), "events": np.array(d.sum()),
            "events_x_pfs2": d @ data.x_pfs2, "events_log_time": np.array(d @ np.log(data.time)),
            "events_tumour": np.bincount(data.tumour_idx, weights=d, minlength=len(data.levels["tumour_type"])),
            "events_centre": np.bincount(data.centre_idx, weights=d, minlength=len(data.levels["centre"]))})
        x, tumour, centre, patient_pattern = data.pfs2_patterns()
        out.update({"pfs2_pattern_x_pfs2": x, "pfs2_pattern_tumour_idx": tumour,
                    "pfs2_pattern_centre_idx": centre, "patient_pfs2_pattern": patient_pattern})
    if data.spec.has_irae and not data.expanded:
        x, tumour, organ, counts = data.irae_patterns()
        out.update({"pattern_x_irae": x, "pattern_tumour_idx": tumour, "pattern_organ_idx": organ,
                    "pattern_counts": counts})
    return out


def build_model(data: ModelData, priors: PriorSet, *, prior_only: bool = False) -> pm.Model:
    r"""The joint PyMC model of a cohort (see module docstring).

    Two exact rewrites keep the gradient cheap (the likelihood is the same):

    * Weibull PH without cure fraction and with one row per patient: the log-likelihood
      in sufficient statistics,
      :math:`\ell = D(\log k - k\log\lambda_0) + (k-1)\sum_i d_i\log t_i + (\sum_i d_i x_i)^\top\beta
      + \sum_g D_g u_g - \sum_i \exp(k(\log t_i - \log\lambda_0) + \eta_i)`,
      so only the last sum runs over patients, and there only through the time term:
      :math:`\sum_i e^{\eta_i} t_i^k = \sum_p e^{\eta_p} \sum_{i \in p} t_i^k` over the
      distinct predictor patterns :math:`p` (:meth:`ModelData.pfs2_patterns`).
    * irAE outcome with one row per patient: patients with the same predictors are
      aggregated (counts per outcome category), as the sequential-logit likelihood is
      linear in the outcome indicators.

    Parameters
    ----------
    data
        Prepared arrays (:func:`rechallenge.model_data.prepare_data`).
    priors
        Prior set with an entry for every parameter the specification uses.
    prior_only
        Leave out the likelihood (the posterior is then the prior): for prior
        predictive checks and for checking that the model reproduces the PriorSet.
    """
    spec = data.spec
    coords = {
        "patient": list(data.patient_ids),
        "pfs2_covariate": list(data.pfs2_names), "irae_covariate": list(data.irae_names),
        "tumour_type": list(data.levels["tumour_type"]), "centre": list(data.levels["centre"]),
        "prior_irae_organ": list(data.levels["prior_irae_organ"]),
        "imputed_covariate": list(data.imputed_names),
        "interval": [f"[{a:g},{b:g})" for a, b in zip((0.0,) + spec.cuts, spec.cuts + (np.inf,))],
    }
    arrays = model_inputs(data)
    fast = uses_sufficient_statistics(data)
    with pm.Model(coords=coords, check_bounds=False) as model:
        inp = {name: pm.Data(name, value) for name, value in arrays.items()}
        rp = inp["rows_patient"]

        def row(v):
            """Patient-level values on the rows (identity when no covariate is missing)."""
            return v[rp] if data.expanded else v

        def group_effects(outcome: str) -> list:
            """(effect, index data name, events data name) of each group of ``outcome``,
            in :data:`GROUP_EFFECTS` order; σ ~ HalfNormal(PriorSet scale)."""
            used = spec.pfs2_groups if outcome == "pfs2" else spec.irae_groups
            out = []
            for sd_var, group_outcome, key, effect, dim in GROUP_EFFECTS:
                if group_outcome == outcome and dim in used:
                    index, centred, events = GROUP_INPUTS[effect]
                    sigma = _prior_rv(sd_var, priors[(outcome, key)])
                    out.append((_group_effect(effect, dim, inp[centred], sigma), index, events))
            return out

        # ---- PFS2 ---------------------------------------------------------------
        beta = _coefficients("log_hr", coefficient_priors(spec, priors, "pfs2"), "pfs2_covariate")
        xp = inp["x_pfs2"]
        for j, (rows, latent_idx) in data.continuous_missing.items():
            latent = pm.Normal(f"latent_{data.pfs2_names[j]}", 0.0, 1.0, shape=int(latent_idx.max()) + 1)
            xp = pt.set_subtensor(xp[rows, j], latent[latent_idx])
        eta = pt.dot(xp, beta) if data.pfs2_names else pt.zeros(data.n_rows)
        events_eta = pt.dot(inp["events_x_pfs2"], beta) if fast and data.pfs2_names else 0.0
        group_effects_pfs2 = group_effects("pfs2")
        for effect, index, events in group_effects_pfs2:
            eta = eta + row(effect[inp[index]])
            if fast:
                events_eta = events_eta + pt.dot(inp[events], effect)

        logit_cure = _prior_rv("logit_cure", priors[("pfs2", "cure_fraction")]) if spec.cure_fraction else None
        if spec.baseline == "weibull":
            log_median = _prior_rv("log_median", priors[("pfs2", "baseline_median")])
            log_shape = _prior_rv("log_shape", priors[("pfs2", "weibull_shape")])
            log_h, cum_h = loglik.weibull_terms(pt, row(inp["time"]), log_median, log_shape, eta)
        else:
            first_mean, first_sd = piecewise_baseline_prior(priors)
            first = pm.Normal("log_hazard_first", mu=first_mean, sigma=first_sd)
            steps = pm.Normal("log_hazard_step", 0.0, RW_SD, shape=len(spec.cuts))
            log_hazards = pm.Deterministic(
                "log_hazard", pt.concatenate([first[None], first + pt.cumsum(steps)]), dims="interval")
            log_h, cum_h = loglik.piecewise_terms(pt, log_hazards, row(inp["exposure"]),
                                                  row(inp["interval_idx"]), eta)
        ell_pfs2 = loglik.survival_loglik(pt, row(inp["event"]), log_h, cum_h, logit_cure)
        if fast:
            k = pt.exp(log_shape)
            log_lam0 = loglik.weibull_log_scale(log_median, log_shape, pt)
            # Σ_i exp(k(log t_i − log λ0) + η_i) by predictor pattern: per patient only
            # the time term; η once per pattern (see build_model's docstring).
            pattern_x = inp["pfs2_pattern_x_pfs2"]
            eta_pattern = pt.dot(pattern_x, beta) if data.pfs2_names else pt.zeros(pattern_x.shape[0])
            for effect, index, _ in group_effects_pfs2:
                eta_pattern = eta_pattern + effect[inp["pfs2_pattern_" + index]]
            time_term = pt.exp(k * (inp["log_time"] - log_lam0))
            pattern_time = pt.inc_subtensor(pt.zeros(pattern_x.shape[0])[inp["patient_pfs2_pattern"]], time_term)
            total_pfs2 = (inp["events"] * (log_shape - k * log_lam0) + (k - 1.0) * inp["events_log_time"]
                          + events_eta - (pt.exp(eta_pattern) * pattern_time).sum())
        ell_irae = pt.zeros(data.n_rows)
        total_irae = 0.0

        # ---- irAE recurrence ----------------------------------------------------
        if spec.has_irae:
            gamma = _coefficients("log_or", coefficient_priors(spec, priors, "irae"), "irae_covariate")
            groups = group_effects("irae")
            a_any = _prior_rv("irae_a_any", priors[("irae", "baseline_any")])
            b_prior = severe_given_any_prior(priors)
            b_severe = pm.Normal("irae_b_severe", mu=float(b_prior.means[0]), sigma=float(b_prior.sds[0]))
            p_any, p_sev = loglik.irae_probabilities(pt, a_any, b_severe, 0.0)
            pm.Deterministic("irae_p_any_ref", p_any)
            pm.Deterministic("irae_p_grade3plus_ref", p_sev)

            def irae_terms(prefix: str, outcome, expand):
                zeta = pt.dot(inp[prefix + "x_irae"], gamma) if data.irae_names else 0.0
                for effect, index, _ in groups:
                    zeta = zeta + expand(effect[inp[prefix + index]])
                return loglik.irae_loglik_onehot(pt, outcome[:, 0], outcome[:, 1], outcome[:, 2],
                                                 a_any, b_severe, zeta)

            ell_irae = irae_terms("", row(inp["y_irae_onehot"]), row)
            if not data.expanded:
                total_irae = irae_terms("pattern_", inp["pattern_counts"], lambda v: v).sum()

        # ---- missing binary covariates: sum over configurations -------------------
        if data.imputed_names:
            prevalence = pm.Beta("prevalence", 1.0, 1.0, dims="imputed_covariate")
            if not prior_only:
                pm.Binomial("prevalence_observed", n=data.prevalence_n.astype(np.int64), p=prevalence,
                            observed=data.prevalence_k.astype(np.int64), dims="imputed_covariate")
            row_imputed, row_value = inp["row_imputed"], inp["row_value"]
            log_config = (row_imputed * (row_value * pt.log(prevalence)
                                         + (1 - row_value) * pt.log1p(-prevalence))).sum(axis=1)
            first_row = inp["first_row"]

            def per_patient(row_terms):
                """log Σ_rows of a patient exp(log P(config) + row term)."""
                ell = log_config + row_terms
                ref = ell[first_row]
                acc = pt.inc_subtensor(pt.zeros(data.n_patients)[rp], pt.exp(ell - ref[rp]))
                return ref + pt.log(acc)
        else:
            def per_patient(row_terms):
                return row_terms
        joint = per_patient(ell_pfs2 + ell_irae)
        if not prior_only:
            if data.expanded:
                total = joint.sum()
            else:
                total = (total_pfs2 if fast else ell_pfs2.sum()) + total_irae
            pm.Potential("loglik", total)
        # Pointwise log-likelihoods (kept out of the trace; computed after sampling):
        # PFS2 marginalised over missing covariates without the irAE outcome, and irAE
        # given PFS2 (their sum is the joint contribution of each patient).
        ll_pfs2 = per_patient(ell_pfs2)
        pm.Deterministic("ll_pfs2", ll_pfs2, dims="patient")
        pm.Deterministic("ll_irae", joint - ll_pfs2, dims="patient")
    return model


#: Deterministics with a patient dimension, excluded from the sampler's trace.
POINTWISE = ("ll_pfs2", "ll_irae")
