"""The model's priors as NumPy: prior densities per coefficient and draws of every parameter.

No PyMC here: the clinician's command line predicts from the literature model alone
(draws from these priors, the prior predictive) without the 4 s PyMC import, simulation
studies draw true parameters from the same priors (simulation-based calibration), and
:func:`rechallenge.model.build_model` takes its coefficient priors from
:func:`coefficient_priors`, so the PyMC model and these draws cannot drift apart.

Distributions (the PyMC model uses the same ones)::

    log_hr_j ~ PriorSet("pfs2", j), or N(log median, sd_log²) for an ``extra`` column
    log_or_j ~ PriorSet("irae", j)
    log_median ~ PriorSet baseline_median, log_shape ~ PriorSet weibull_shape
    log h_1 ~ N(log ln 2 − E[log m], sd[log m]² + RW_SD²), log h_{j+1} − log h_j ~ N(0, RW_SD²)
    logit_cure ~ PriorSet cure_fraction
    σ ~ HalfNormal(PriorSet scale); group effects ~ N(0, σ²)
    irae_a_any ~ PriorSet baseline_any; irae_b_severe ~ :func:`severe_given_any_prior`
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from .loglik import LOG_LOG2, irae_probabilities
from .mixture import NormalMixture
from .modelspec import ModelSpec
from .priorset import PriorSet

#: sd of the random walk of the piecewise-exponential log hazards (a judgement: the
#: hazard rarely changes more than e^{±1} between adjacent intervals).
RW_SD = 0.5

#: Group-level standard deviations: (variable, outcome, PriorSet parameter, effect, dim).
GROUP_EFFECTS = (
    ("sigma_tumour", "pfs2", "sigma_tumour_type", "tumour_effect", "tumour_type"),
    ("sigma_centre", "pfs2", "sigma_centre", "centre_effect", "centre"),
    ("sigma_tumour_irae", "irae", "sigma_tumour_type", "tumour_effect_irae", "tumour_type"),
    ("sigma_organ", "irae", "sigma_organ", "organ_effect", "prior_irae_organ"),
)


def pfs2_names(spec: ModelSpec) -> tuple[str, ...]:
    """PFS2 design columns: literature covariates, then ``extra`` columns."""
    return tuple(spec.pfs2_covariates) + tuple(e.name for e in spec.extra)


def coefficient_priors(spec: ModelSpec, priors: PriorSet, outcome: str) -> list[NormalMixture]:
    """The prior of each coefficient of ``outcome`` (``"pfs2"`` or ``"irae"``), in design order.

    Literature covariates take their PriorSet entry; ``extra`` columns their declared
    ``N(log median, sd_log²)`` (log-HR per unit, per SD for continuous columns).
    """
    if outcome == "pfs2":
        extra = {e.name: e for e in spec.extra}
        return [NormalMixture.normal(float(np.log(extra[n].median)), float(extra[n].sd_log))
                if n in extra else priors[("pfs2", n)].distribution for n in pfs2_names(spec)]
    return [priors[("irae", n)].distribution for n in (spec.irae_covariates or ())]


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


def piecewise_baseline_prior(priors: PriorSet) -> tuple[float, float]:
    """Mean and sd of the first log hazard of the piecewise-exponential baseline."""
    m = priors[("pfs2", "baseline_median")].distribution
    return LOG_LOG2 - m.mean, float(np.hypot(m.sd, RW_SD))


def draw_prior(spec: ModelSpec, priors: PriorSet, levels: Mapping[str, Sequence[str]], *,
               draws: int = 4000, seed: int = 0) -> xr.Dataset:
    """Draws of every parameter from the model's priors, shaped like a posterior.

    Parameters
    ----------
    spec, priors
        Model specification and prior set.
    levels
        Group levels by dim (``tumour_type``, ``centre``, ``prior_irae_organ``).
    draws, seed
        Number of draws (one chain) and the seed; the same seed gives the same draws.

    Returns
    -------
    xarray.Dataset
        Dims ``(chain, draw, …)`` with the variable names and coords of a fit's
        ``posterior`` group (``log_hr``, ``log_or``, ``log_median``, group effects, …).
    """
    if int(draws) != draws or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
    rng = np.random.default_rng(seed)
    shape = (1, int(draws))
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    coords: dict[str, list[str]] = {"chain": [0], "draw": list(range(int(draws)))}

    def mixture_draws(mixtures: list[NormalMixture]) -> np.ndarray:
        return np.stack([m.sample(int(draws), rng) for m in mixtures], axis=-1).reshape(*shape, len(mixtures))

    names = list(pfs2_names(spec))
    coords["pfs2_covariate"] = names
    out["log_hr"] = (("chain", "draw", "pfs2_covariate"), mixture_draws(coefficient_priors(spec, priors, "pfs2"))
                     if names else np.zeros((*shape, 0)))
    if spec.baseline == "weibull":
        for var, key in (("log_median", "baseline_median"), ("log_shape", "weibull_shape")):
            out[var] = (("chain", "draw"), priors[("pfs2", key)].distribution.sample(int(draws), rng).reshape(shape))
    else:
        mean, sd = piecewise_baseline_prior(priors)
        first = rng.normal(mean, sd, shape)
        steps = rng.normal(0.0, RW_SD, (*shape, len(spec.cuts)))
        coords["interval"] = [f"[{a:g},{b:g})" for a, b in zip((0.0,) + spec.cuts, spec.cuts + (np.inf,))]
        out["log_hazard"] = (("chain", "draw", "interval"),
                             np.concatenate([first[..., None], first[..., None] + np.cumsum(steps, -1)], -1))
    if spec.cure_fraction:
        out["logit_cure"] = (("chain", "draw"), priors[("pfs2", "cure_fraction")].distribution.sample(
            int(draws), rng).reshape(shape))
    groups = {"pfs2": set(spec.pfs2_groups), "irae": set(spec.irae_groups or ()) if spec.has_irae else set()}
    for sd_var, outcome, key, effect, dim in GROUP_EFFECTS:
        if dim not in groups[outcome]:
            continue
        sigma = np.abs(rng.normal(0.0, priors[(outcome, key)].halfnormal_scale, shape))
        coords[dim] = [str(v) for v in levels[dim]]
        out[sd_var] = (("chain", "draw"), sigma)
        out[effect] = (("chain", "draw", dim), sigma[..., None] * rng.normal(size=(*shape, len(levels[dim]))))
    if spec.has_irae:
        irae = list(spec.irae_covariates or ())
        coords["irae_covariate"] = irae
        out["log_or"] = (("chain", "draw", "irae_covariate"), mixture_draws(coefficient_priors(spec, priors, "irae"))
                         if irae else np.zeros((*shape, 0)))
        a_any = priors[("irae", "baseline_any")].distribution.sample(int(draws), rng).reshape(shape)
        b_prior = severe_given_any_prior(priors)
        b_severe = rng.normal(b_prior.means[0], b_prior.sds[0], shape)
        p_any, p_sev = irae_probabilities(np, a_any, b_severe, 0.0)
        out.update({"irae_a_any": (("chain", "draw"), a_any), "irae_b_severe": (("chain", "draw"), b_severe),
                    "irae_p_any_ref": (("chain", "draw"), p_any),
                    "irae_p_grade3plus_ref": (("chain", "draw"), p_sev)})
    used = {d for dims, _ in out.values() for d in dims}
    return xr.Dataset(out, coords={k: v for k, v in coords.items() if k in used})
