"""The PyMC graph: hierarchical PFS2 survival + irAE recurrence, priors from a PriorSet.

This module only *builds* the model (fitting, prediction and summaries live
elsewhere). Equations (see :mod:`rechallenge.loglik` for the likelihoods)::

    η_i  = Σ_j β_j x_ij + u[tumour_i] (+ v[tumour_i/centre_i])         PFS2 log-hazard
    ζ_i  = Σ_j γ_j z_ij + w[tumour_i] + o[organ_i]                    irAE log-odds
    β_j  ~ PriorSet("pfs2", j)   (log HR; mixtures where the prior is robust)
    γ_j  ~ PriorSet("irae", j)   (log OR)
    log m ~ PriorSet baseline_median, log k ~ PriorSet weibull_shape (Weibull baseline)
    logit π ~ PriorSet cure_fraction (cure-fraction models)
    u ~ N(0, σ_t²), σ_t ~ HalfNormal(PriorSet sigma_tumour_type); v ~ N(0, σ_c²) …
    a ~ PriorSet baseline_any; b ~ N(·) moment-matched to logit(P(≥3)/P(any)) under the
        PriorSet baseline probabilities (sequential logit, see loglik)
    p_j ~ Beta(1, 1): prevalence of each binary covariate with missing values

Group intercepts use the centred form for groups with at least
``spec.centred_min_patients`` patients and the non-centred form otherwise; for the irAE
part the threshold is ``IRAE_INFORMATION_RATIO`` times higher, because a patient's
ordinal outcome carries about p(1 − p) ≈ 1/4 of the information of a PFS2 event.
Piecewise-exponential baseline: log h_1 ~ N(log ln 2 − E[log m], sd[log m]² + 0.5²),
log h_{j+1} − log h_j ~ N(0, 0.5²) (a judgement: the hazard rarely changes more than
e^{±1} between adjacent intervals).

All data enter through ``pm.Data`` so that a compiled model can be refitted on new data
of the same structure (:mod:`rechallenge.fit`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from . import loglik
from .mixture import NormalMixture
from .model_data import ModelData
from .priorset import PriorEntry, PriorSet

RW_SD = 0.5
IRAE_INFORMATION_RATIO = 4


def _prior_rv(name: str, entry: PriorEntry, **kwargs: Any):
    """A PyMC random variable with the PriorSet distribution of one entry."""
    if entry.measure == "group_sd":
        return pm.HalfNormal(name, sigma=entry.halfnormal_scale, **kwargs)
    d = entry.distribution
    if d.n_components == 1:
        return pm.Normal(name, mu=float(d.means[0]), sigma=float(d.sds[0]), **kwargs)
    return pm.NormalMixture(name, w=d.weights, mu=d.means, sigma=d.sds, **kwargs)


def severe_given_any_prior(priors: PriorSet, n: int = 20000, seed: int = 0) -> NormalMixture:
    """Normal prior for ``b = logit P(grade ≥ 3 | any)`` implied by the PriorSet.

    Draws ``P(any)`` and ``P(≥ 3)`` from their priors, keeps pairs with
    ``P(≥ 3) < P(any)``, and moment-matches ``logit(P(≥ 3) / P(any))``.
    """
    rng = np.random.default_rng(seed)
    a = priors[("irae", "baseline_any")].distribution.sample(n, rng)
    s = priors[("irae", "baseline_grade3plus")].distribution.sample(n, rng)
    p_any, p_sev = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-s))
    ratio = p_sev / p_any
    ratio = ratio[ratio < 1]
    b = np.log(ratio / (1 - ratio))
    return NormalMixture.normal(float(b.mean()), float(b.std()))


def _group_effect(name: str, dim: str, sizes: np.ndarray, sigma, threshold: int):
    """Intercepts with per-group centred/non-centred parameterisation."""
    centred = np.flatnonzero(sizes >= threshold)
    noncentred = np.flatnonzero(sizes < threshold)
    effect = pt.zeros(sizes.size)
    if centred.size:
        c = pm.Normal(f"{name}_centred", 0.0, sigma, shape=centred.size)
        effect = pt.set_subtensor(effect[centred], c)
    if noncentred.size:
        z = pm.Normal(f"{name}_offset", 0.0, 1.0, shape=noncentred.size)
        effect = pt.set_subtensor(effect[noncentred], sigma * z)
    return pm.Deterministic(name, effect, dims=dim)


def build_model(data: ModelData, priors: PriorSet, *, prior_only: bool = False) -> pm.Model:
    """The joint PyMC model of a cohort (see module docstring).

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
    extra = {e.name: e for e in spec.extra}
    with pm.Model(coords=coords) as model:
        time = pm.Data("time", data.time)
        event = pm.Data("event", data.event)
        rows_patient = pm.Data("rows_patient", data.rows_patient)
        x_pfs2 = pm.Data("x_pfs2", data.x_pfs2)
        tumour_idx = pm.Data("tumour_idx", data.tumour_idx)
        rp = rows_patient
        expanded = data.n_rows != data.n_patients

        def row(v):
            """Patient-level values on the rows (identity when no covariate is missing)."""
            return v[rp] if expanded else v

        # PFS2 coefficients: one scalar per covariate (their priors differ in form)
        betas = []
        for name in data.pfs2_names:
            if name in extra:
                e = extra[name]
                betas.append(pm.Normal(f"pfs2_{name}", mu=np.log(e.median), sigma=e.sd_log))
            else:
                betas.append(_prior_rv(f"pfs2_{name}", priors[("pfs2", name)]))
        beta = pm.Deterministic("log_hr", pt.stack(betas) if betas else pt.zeros(0), dims="pfs2_covariate")
        xp = x_pfs2
        for j, (rows, latent_idx) in data.continuous_missing.items():
            latent = pm.Normal(f"latent_{data.pfs2_names[j]}", 0.0, 1.0, shape=int(latent_idx.max()) + 1)
            xp = pt.set_subtensor(xp[rows, j], latent[latent_idx])
        eta = pt.dot(xp, beta) if betas else pt.zeros(data.n_rows)
        if "tumour_type" in spec.pfs2_groups:
            sigma_t = _prior_rv("sigma_tumour", priors[("pfs2", "sigma_tumour_type")])
            u = _group_effect("tumour_effect", "tumour_type", data.group_sizes("tumour_type"),
                              sigma_t, spec.centred_min_patients)
            eta = eta + row(u[tumour_idx])
        if "centre" in spec.pfs2_groups:
            centre_idx = pm.Data("centre_idx", data.centre_idx)
            sigma_c = _prior_rv("sigma_centre", priors[("pfs2", "sigma_centre")])
            v = _group_effect("centre_effect", "centre", data.group_sizes("centre"),
                              sigma_c, spec.centred_min_patients)
            eta = eta + row(v[centre_idx])

        logit_cure = _prior_rv("logit_cure", priors[("pfs2", "cure_fraction")]) if spec.cure_fraction else None
        if spec.baseline == "weibull":
            log_median = _prior_rv("log_median", priors[("pfs2", "baseline_median")])
            log_shape = _prior_rv("log_shape", priors[("pfs2", "weibull_shape")])
            log_h, cum_h = loglik.weibull_terms(pt, row(time), log_median, log_shape, eta)
        else:
            m = priors[("pfs2", "baseline_median")].distribution
            first = pm.Normal("log_hazard_first", mu=loglik.LOG_LOG2 - m.mean,
                              sigma=float(np.hypot(m.sd, RW_SD)))
            steps = pm.Normal("log_hazard_step", 0.0, RW_SD, shape=len(spec.cuts))
            log_hazards = pm.Deterministic(
                "log_hazard", pt.concatenate([first[None], first + pt.cumsum(steps)]), dims="interval")
            exposure = pm.Data("exposure", data.exposure)
            interval = pm.Data("interval_idx", data.interval)
            log_h, cum_h = loglik.piecewise_terms(pt, log_hazards, row(exposure), row(interval), eta)
        ell_pfs2 = loglik.survival_loglik(pt, row(event), log_h, cum_h, logit_cure)
        ell_irae = pt.zeros(data.n_rows)

        if spec.has_irae:
            x_irae = pm.Data("x_irae", data.x_irae)
            # outcome as 0/1 indicators (rows of zeros: not assessed)
            y_onehot = pm.Data("y_irae_onehot", data.y_irae_onehot)
            gammas = [_prior_rv(f"irae_{name}", priors[("irae", name)]) for name in data.irae_names]
            gamma = pm.Deterministic("log_or", pt.stack(gammas) if gammas else pt.zeros(0), dims="irae_covariate")
            zeta = pt.dot(x_irae, gamma) if gammas else pt.zeros(data.n_rows)
            if "tumour_type" in spec.irae_groups:
                sigma_ti = _prior_rv("sigma_tumour_irae", priors[("irae", "sigma_tumour_type")])
                w = _group_effect("tumour_effect_irae", "tumour_type", data.group_sizes("tumour_type"),
                                  sigma_ti, IRAE_INFORMATION_RATIO * spec.centred_min_patients)
                zeta = zeta + row(w[tumour_idx])
            if "prior_irae_organ" in spec.irae_groups:
                organ_idx = pm.Data("organ_idx", data.organ_idx)
                sigma_o = _prior_rv("sigma_organ", priors[("irae", "sigma_organ")])
                o = _group_effect("organ_effect", "prior_irae_organ", data.group_sizes("prior_irae_organ"),
                                  sigma_o, IRAE_INFORMATION_RATIO * spec.centred_min_patients)
                zeta = zeta + row(o[organ_idx])
            a_any = _prior_rv("irae_a_any", priors[("irae", "baseline_any")])
            b_prior = severe_given_any_prior(priors)
            b_severe = pm.Normal("irae_b_severe", mu=float(b_prior.means[0]), sigma=float(b_prior.sds[0]))
            p_any, p_sev = loglik.irae_probabilities(pt, a_any, b_severe, 0.0)
            pm.Deterministic("irae_p_any_ref", p_any)
            pm.Deterministic("irae_p_grade3plus_ref", p_sev)
            y_rows = row(y_onehot)
            ell_irae = loglik.irae_loglik_onehot(pt, y_rows[:, 0], y_rows[:, 1], y_rows[:, 2],
                                                 a_any, b_severe, zeta)

        if data.imputed_names:
            prevalence = pm.Beta("prevalence", 1.0, 1.0, dims="imputed_covariate")
            if not prior_only:
                pm.Binomial("prevalence_observed", n=data.prevalence_n.astype(np.int64), p=prevalence,
                            observed=data.prevalence_k.astype(np.int64), dims="imputed_covariate")
            row_imputed = pm.Data("row_imputed", data.row_imputed)
            row_value = pm.Data("row_value", data.row_value)
            log_config = (row_imputed * (row_value * pt.log(prevalence)
                                         + (1 - row_value) * pt.log1p(-prevalence))).sum(axis=1)
            first_row = pm.Data("first_row", data.first_row)

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
            pm.Potential("loglik", joint.sum())
        # Pointwise log-likelihoods (kept out of the trace; computed after sampling):
        # PFS2 marginalised over missing covariates without the irAE outcome, and irAE
        # given PFS2 (their sum is the joint contribution of each patient).
        ll_pfs2 = per_patient(ell_pfs2)
        pm.Deterministic("ll_pfs2", ll_pfs2, dims="patient")
        pm.Deterministic("ll_irae", joint - ll_pfs2, dims="patient")
    return model


#: Deterministics with a patient dimension, excluded from the sampler's trace.
POINTWISE = ("ll_pfs2", "ll_irae")
