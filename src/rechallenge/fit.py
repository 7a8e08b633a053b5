"""Fit the model to a local cohort: one call, a checked and stamped posterior.

:func:`fit` validates the cohort against the specification, builds the PyMC model,
samples it (nutpie by default, compiled once per model structure and reused with new
data), and returns ``arviz.InferenceData`` with

* ``posterior`` and ``sample_stats``;
* ``log_likelihood`` (per patient: ``pfs2`` and ``irae``) for LOO;
* ``log_prior`` (log prior density of each coefficient and baseline parameter, for
  power-scaling sensitivity);
* attributes: package/PyMC/nutpie versions, the specification, the prior set and its
  SHA-256, the seed, the sampler settings, the diagnostics, ``reliable`` (0/1), and the
  number of values imputed per column.

Convergence gate: every monitored parameter must have R-hat ≤ 1.01 and bulk ESS ≥ 400,
and there must be no divergent transition; otherwise an :class:`UnreliableFitWarning`
is raised and the fit is marked unreliable (predictions carry that mark).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import __version__
from .errors import RechallengeError
from .model_data import ModelData, prepare_data
from .modelspec import ModelSpec, load_spec
from .priors import resolve_priors
from .priorset import PriorSet

log = logging.getLogger(__name__)

RHAT_MAX = 1.01
ESS_MIN = 400
#: Step-size adaptation target: 0.9 rather than 0.8, because the group-level sds of
#: small groups make funnel-shaped posteriors where larger steps diverge.
TARGET_ACCEPT = 0.9
#: Target for harder posteriors, where 0.9 leaves divergences and R-hat > 1.01 in a
#: sizeable share of fits (measured 2026-11-21, 4 x 1000 after 1000; benchmarks/RESULTS.md):
#:
#: * the likelihood imputes missing covariates: a patient with a missing binary
#:   covariate contributes a two-component mixture. On the demo cohort (37 missing NLR,
#:   seeds 0-17), 5 of 18 fits were unreliable at 0.9 and 1 of 18 at 0.95, at 1.7x the
#:   leapfrog steps;
#: * some group effect is in the centred form (a group of >= centred_min_patients
#:   patients): when sigma is small its prior is a funnel. With 2,000 patients (2
#:   cohorts x 5 seeds), 3 of 10 fits had 1-2 divergences at 0.9 and 0 of 10 at 0.95, at
#:   1.05x the steps; 3,000 patients (the benchmark cohort, 4 seeds): 4 of 4 fits had
#:   1-27 divergences at 0.9, 1 of 4 one divergence at 0.95, at 1.03x the steps.
TARGET_ACCEPT_HIGH = 0.95
#: Target of the fused density (nutpie, fast form), whose sampling parameterisation
#: (:mod:`rechallenge.fused_density`: folded group SDs, information-scaled deviates,
#: centred intercepts) has no funnel. At 0.8: no divergence in 24 of 24 fits of 100 and
#: of 300 patients (two sessions) and 6 of 6 of 3,000, one in 3 of 12 fits of 30,000;
#: 10 leapfrog steps per draw at 300 patients instead of 15 at 0.9 (measured 2026-11-22,
#: benchmarks/RESULTS.md). 0.8 is also nutpie's and PyMC's default.
TARGET_ACCEPT_FUSED = 0.8
SAMPLERS = ("nutpie", "pymc", "numpyro")


class UnreliableFitWarning(UserWarning):
    """The sampler did not converge well enough for its results to be trusted."""


@dataclass(frozen=True)
class Diagnostics:
    """Convergence summary of a fit (monitored: all free parameters)."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    reliable: bool
    problems: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _extreme(values: np.ndarray, reduce) -> float:
    """``reduce`` (np.max or np.min) of the values that are not NaN; NaN if none is (as
    xarray's ``max``/``min``, which skip NaN)."""
    finite = values[~np.isnan(values)]
    return float(reduce(finite)) if finite.size else float("nan")


def diagnose(idata, var_names: list[str], *, rhat_max: float = RHAT_MAX,
             ess_min: float = ESS_MIN) -> Diagnostics:
    """R-hat (rank-normalised), bulk/tail ESS and divergences of the given variables.

    The largest R-hat and smallest ESS over every element of the variables, as ArviZ's
    ``rhat``/``ess`` would give them (:mod:`rechallenge.convergence`; NaN elements, e.g.
    a constant, are skipped).
    """
    from .convergence import convergence_summary

    post = idata.posterior
    draws = np.concatenate([np.moveaxis(post[name].values.reshape(*post[name].shape[:2], -1), -1, 0)
                            for name in var_names]) if var_names else np.zeros((0, 1, 1))
    rhats, bulk, tail = convergence_summary(draws)
    rhat, ess_bulk, ess_tail = _extreme(rhats, np.max), _extreme(bulk, np.min), _extreme(tail, np.min)
    div = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
    problems = []
    if not rhat <= rhat_max:
        problems.append(f"R-hat {rhat:.3f} > {rhat_max}")
    if not ess_bulk >= ess_min:
        problems.append(f"bulk ESS {ess_bulk:.0f} < {ess_min}")
    if div:
        problems.append(f"{div} divergent transitions")
    return Diagnostics(rhat, ess_bulk, ess_tail, div, not problems, tuple(problems))


def _as_cohort(cohort: Any, spec: ModelSpec):
    from .cohort import Cohort, read_cohort, validate_cohort

    if isinstance(cohort, Cohort):
        missing = spec.required_columns() - set(cohort.data.columns)
        if missing:
            raise RechallengeError(f"the cohort lacks column(s) {sorted(missing)} that the "
                                   f"specification {spec.name!r} uses")
        return cohort
    from .simulate import SimulatedCohort

    if isinstance(cohort, SimulatedCohort):
        cohort = cohort.data
    kwargs = dict(required=sorted(spec.required_columns()), extra=spec.extra_types)
    if isinstance(cohort, pd.DataFrame):
        return validate_cohort(cohort, **kwargs)
    if not isinstance(cohort, (str, os.PathLike)):
        raise RechallengeError("cohort must be a Cohort, a SimulatedCohort, a DataFrame or the path "
                               f"of a CSV file, got {type(cohort).__name__}")
    return read_cohort(cohort, **kwargs)


def monitored_names(model) -> list[str]:
    """Free parameters (constrained names) whose convergence is checked."""
    return [rv.name for rv in model.free_RVs]


def _structure_key(data: ModelData, spec: ModelSpec, priors: PriorSet, prior_only: bool) -> tuple:
    """Everything that fixes the compiled graph (data values and patient count may change)."""
    from .model import uses_sufficient_statistics

    levels = tuple((g, len(v)) for g, v in data.levels.items())
    return (spec.hash(), priors.hash(), levels, data.imputed_names,
            tuple(sorted(data.continuous_missing)), data.n_latent, data.expanded,
            uses_sufficient_statistics(data), prior_only)


_COMPILED: dict[tuple, Any] = {}
#: Wall seconds of the last nutpie fit's compile (0 when reused) and sampling (benchmarks).
LAST_TIMINGS: dict[str, float] = {"compile": float("nan"), "sample": float("nan")}
#: From this many patients nutpie adapts a low-rank mass matrix (Seyboldt et al. 2025,
#: nutpie docs): the PFS2 coefficients and the baseline are correlated, and at 3,000
#: patients it halves the leapfrog steps per draw (28.6 -> 14.7 measured).
LOW_RANK_MIN_PATIENTS = 1000


def _trace_names(model) -> list[str]:
    """Variables stored in the trace: free parameters and the non-pointwise deterministics."""
    from .model import POINTWISE

    return [v.name for v in model.free_RVs] + [d.name for d in model.deterministics if d.name not in POINTWISE]


def check_target_accept(value: Any) -> None:
    """Raise :class:`RechallengeError` unless ``value`` is None or a number in (0, 1)."""
    if value is not None and not (isinstance(value, (int, float)) and 0 < value < 1):
        raise RechallengeError(f"target_accept must be a number between 0 and 1 (exclusive), got {value!r}")


def default_target_accept(data: ModelData, prior_only: bool = False, fused: bool = False) -> float:
    """:data:`TARGET_ACCEPT_FUSED` when nutpie samples the fused density (``fused``),
    else :data:`TARGET_ACCEPT_HIGH` when the likelihood imputes missing covariates or some
    group effect is centred, else :data:`TARGET_ACCEPT`.

    A prior-only fit keeps :data:`TARGET_ACCEPT`. It has no likelihood to impute in, and
    the measurements behind the higher target are of posteriors, not priors.
    """
    from .model import has_centred_group

    if fused and not prior_only:
        return TARGET_ACCEPT_FUSED
    if prior_only:
        return TARGET_ACCEPT
    imputes = bool(data.imputed_names) or data.n_latent > 0
    return TARGET_ACCEPT_HIGH if imputes or has_centred_group(data) else TARGET_ACCEPT


def _sample_nutpie(build_model, data, key, *, draws, tune, chains, seed, progressbar, cores, target_accept):
    """Sample with nutpie; returns the InferenceData and the monitored parameter names.

    ``build_model()`` returns the model to compile, the names of its parameters and, for
    the fused twin, the function that turns its traced vector into the model's parameters
    after sampling (:func:`rechallenge.fused_model.posterior_builder`; None otherwise). The
    compiled model is cached per structure key. A refit of a cached structure swaps in
    the new data and does not build the PyMC model at all (``build_model`` is called only
    on the first compile), which is what keeps simulation-study replicates cheap. Warm-up
    draws are not kept (nothing downstream reads them), and the trace is converted by
    :mod:`rechallenge.nutpie_trace` (nutpie's own conversion cost 0.06–0.08 s per fit).
    """
    import nutpie

    from .fused_model import FUSED_VECTOR, sampling_inputs
    from .nutpie_trace import to_inference_data

    cached = _COMPILED.get(key)
    t0 = time.perf_counter()
    if cached is None:
        import pytensor

        model, monitored, rebuild_posterior = build_model()
        # IEEE arithmetic, not PyTensor's default numba fast-math flags: with reassociation,
        # LLVM vectorises sums (e.g. inside the fused kernel, once inlined) with a split
        # that depends on the alignment of freshly allocated arrays, which differs between
        # threads, so chains sampled in parallel gave different numbers for the same seed
        # (measured: 323 of 20,000 fused log densities differed by 1 ulp between two
        # threads, and the chains then drifted apart; 0 with fast-math off).
        # The fused twin traces only its vector: its deterministics are computed after
        # sampling, for all draws at once (fused_model.reference_draws).
        traced = [FUSED_VECTOR] if rebuild_posterior is not None else _trace_names(model)
        with pytensor.config.change_flags(numba__fastmath=False):
            compiled = nutpie.compile_pymc_model(model, var_names=traced)
        _COMPILED[key] = (compiled, monitored, rebuild_posterior)
        arrays = None
    else:
        compiled, monitored, rebuild_posterior = cached
        arrays = sampling_inputs(data)
        shared = set(compiled.shared_data)
        compiled = compiled.with_data(**{k: v for k, v in arrays.items() if k in shared})
    t1 = time.perf_counter()
    low_rank = data.n_patients >= LOW_RANK_MIN_PATIENTS
    trace = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed,
                          progress_bar=progressbar, cores=cores, target_accept=target_accept,
                          low_rank_modified_mass_matrix=low_rank, return_raw_trace=True)
    if rebuild_posterior is None:
        idata = to_inference_data(trace, compiled.coords, skip_posterior=(FUSED_VECTOR,))
    else:
        idata = to_inference_data(trace, compiled.coords)
        idata.posterior = rebuild_posterior(idata.posterior, arrays if arrays is not None else sampling_inputs(data))
    LAST_TIMINGS.update(compile=t1 - t0, sample=time.perf_counter() - t1)
    return idata, monitored


def _sample_pymc(model, *, draws, tune, chains, seed, progressbar, cores, target_accept, nuts_sampler="pymc"):
    import pymc as pm

    with model:
        return pm.sample(draws=draws, tune=tune, chains=chains, random_seed=seed, cores=cores,
                         progressbar=progressbar, var_names=_trace_names(model), nuts_sampler=nuts_sampler,
                         target_accept=target_accept, compute_convergence_checks=False)


def _log_prior(idata, priors: PriorSet, data: ModelData):
    """Log prior density per draw of each coefficient and baseline parameter.

    Coefficients keep their dims (``log_hr`` over ``pfs2_covariate``, ``log_or`` over
    ``irae_covariate``); the densities are those of :func:`rechallenge.model.coefficient_priors`.
    """
    import xarray as xr

    from .prior_draws import coefficient_priors

    post = idata.posterior
    out = {}
    for var, outcome, dim in (("log_hr", "pfs2", "pfs2_covariate"), ("log_or", "irae", "irae_covariate")):
        if var in post and post[var].sizes.get(dim, 0):
            dists = coefficient_priors(data.spec, priors, outcome)
            values = post[var].transpose("chain", "draw", dim).values
            dens = np.stack([d.logpdf(values[..., j]) for j, d in enumerate(dists)], axis=-1)
            out[var] = xr.DataArray(dens, dims=("chain", "draw", dim), coords=post[var].coords)
    scalars = {"log_median": ("pfs2", "baseline_median"), "log_shape": ("pfs2", "weibull_shape"),
               "logit_cure": ("pfs2", "cure_fraction"), "irae_a_any": ("irae", "baseline_any")}
    for var, key in scalars.items():
        if var in post and key in priors and priors[key].distribution is not None:
            values = post[var].values
            out[var] = xr.DataArray(priors[key].distribution.logpdf(values.ravel()).reshape(values.shape),
                                    dims=("chain", "draw"), coords={"chain": post.chain, "draw": post.draw})
    return xr.Dataset(out)


def fit(cohort: Any, spec: str | Path | Mapping[str, Any] | ModelSpec | None = "literature",
        priors: str | Path | PriorSet = "literature", *, sampler: str = "nutpie", draws: int = 1000,
        tune: int = 1000, chains: int = 4, seed: int = 0, progressbar: bool = True,
        prior_only: bool = False, log_likelihood: bool = True, cores: int | None = None,
        group_levels: Mapping[str, Any] | None = None, target_accept: float | None = None):
    """Fit the model to a cohort.

    Parameters
    ----------
    cohort
        A :class:`rechallenge.cohort.Cohort`, a
        :class:`rechallenge.simulate.SimulatedCohort`, a DataFrame or a CSV path
        (validated against the columns the specification uses).
    spec
        ``"literature"`` (``models/literature.yaml``), a YAML path, a mapping or a ModelSpec.
    priors
        ``"literature"``, ``"vague"``, a :class:`PriorSet` or a saved prior-set file.
    sampler
        ``"nutpie"`` (default; compiled once per model structure), ``"pymc"`` or ``"numpyro"``.
    draws, tune, chains, seed
        Sampler settings; the same seed gives the same numbers.
    prior_only
        Sample the prior (no likelihood): prior predictive checks, prior reproduction.
    log_likelihood
        Add the ``log_likelihood`` group (draws × patients; switch off for very large
        cohorts or simulation studies).
    cores
        Chains sampled in parallel (default: ``min(chains, CPUs)``).
    group_levels
        Fixed levels of ``tumour_type`` / ``prior_irae_organ`` (a superset of those in
        the cohort; :func:`rechallenge.model_data.prepare_data`). Simulation studies pass
        the full category lists so that every replicate reuses one compiled model.
    target_accept
        NUTS step-size adaptation target in (0, 1); higher means smaller steps, fewer
        divergences and longer trajectories. Default: :func:`default_target_accept`
        (0.8 when nutpie samples the fused density; otherwise 0.9, or 0.95 when the
        likelihood imputes missing covariates or a group effect is centred).

    Returns
    -------
    arviz.InferenceData
        See the module docstring. ``idata.attrs["reliable"]`` is 1 when the convergence
        gate passed.
    """
    if sampler not in SAMPLERS:
        raise RechallengeError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    for name, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        if int(value) != value or value < low:
            raise RechallengeError(f"{name} must be an integer >= {low}, got {value!r}")
    check_target_accept(target_accept)
    if sampler == "numpyro" and not all(importlib.util.find_spec(m) for m in ("jax", "numpyro")):
        raise RechallengeError("sampler 'numpyro' needs jax and numpyro "
                               "(pip install numpyro); use 'nutpie' or 'pymc'")
    spec = load_spec(spec)
    prior_set = resolve_priors(priors)
    cohort = _as_cohort(cohort, spec)
    try:
        data = prepare_data(cohort, spec, group_levels=group_levels)
    except ValueError as exc:
        raise RechallengeError(str(exc)) from None
    from .model import POINTWISE, build_model

    built = []

    def model():
        """The PyMC model of this cohort, built at most once and only when needed."""
        if not built:
            built.append(build_model(data, prior_set, prior_only=prior_only))
        return built[0]

    from .fused_model import build_fused_model, can_fuse, parameter_layout, posterior_builder

    fused = sampler == "nutpie" and can_fuse(data, prior_only)
    cores = cores or min(chains, os.cpu_count() or 1)
    if target_accept is None:
        target_accept = default_target_accept(data, prior_only, fused=fused)
    kwargs = dict(draws=draws, tune=tune, chains=chains, seed=seed, progressbar=progressbar, cores=cores,
                  target_accept=float(target_accept))
    if sampler == "nutpie":
        key = _structure_key(data, spec, prior_set, prior_only) + (fused,)

        def sampling_model():
            """What nutpie compiles (the fused twin where it applies, else the model
            itself), the monitored parameters, and for the twin the function that turns
            its traced vector into the model's parameters."""
            if not fused:
                return model(), monitored_names(model()), None
            twin = build_fused_model(data, prior_set, reference=model())
            builder = posterior_builder(twin, parameter_layout(model()), spec.has_irae)
            return twin, monitored_names(model()), builder

        idata, monitored = _sample_nutpie(sampling_model, data, key, **kwargs)
    else:
        idata, monitored = _sample_pymc(model(), nuts_sampler=sampler, **kwargs), monitored_names(model())
    diag = diagnose(idata, monitored)
    if log_likelihood:
        import pymc as pm

        pointwise = pm.compute_deterministics(idata.posterior, var_names=list(POINTWISE),
                                              model=model(), progressbar=False)
        groups = {"pfs2": pointwise["ll_pfs2"]}
        if spec.has_irae:
            groups["irae"] = pointwise["ll_irae"]
        idata.add_groups(log_likelihood=pointwise.assign(**groups)[list(groups)])
    idata.add_groups(log_prior=_log_prior(idata, prior_set, data))
    _stamp(idata, spec=spec, priors=prior_set, data=data, diag=diag, sampler=sampler, seed=seed,
           draws=draws, tune=tune, chains=chains, prior_only=prior_only, target_accept=target_accept)
    idata.attrs.update(cohort_description(cohort, data))
    if not diag.reliable:
        warnings.warn("UNRELIABLE FIT: " + "; ".join(diag.problems)
                      + ". Predictions from this fit are marked unreliable; sample longer "
                        "(--draws/--tune) or simplify the model.", UnreliableFitWarning, stacklevel=2)
    return idata


def _stamp(idata, *, spec, priors, data, diag, sampler, seed, draws, tune, chains, prior_only,
           target_accept) -> None:
    import arviz
    import pymc

    try:
        import nutpie
        nutpie_version = nutpie.__version__
    except ImportError:  # pragma: no cover
        nutpie_version = "absent"
    idata.attrs.update({
        "rechallenge_version": __version__, "pymc_version": pymc.__version__,
        "arviz_version": arviz.__version__, "nutpie_version": nutpie_version,
        "model_spec": json.dumps(spec.to_dict()), "spec_sha256": spec.hash(),
        "prior_set": priors.to_json(), "priors_sha256": priors.hash(),
        "sampler": sampler, "seed": int(seed), "draws": int(draws), "tune": int(tune),
        "chains": int(chains), "target_accept": float(target_accept), "prior_only": int(prior_only),
        "diagnostics": diag.to_json(), "reliable": int(diag.reliable),
        "n_patients": data.n_patients, "n_events": int(data.event.sum()),
        "n_imputed": json.dumps(data.n_imputed),
        "standardisation": json.dumps(data.standardisation),
        "levels": json.dumps({k: list(v) for k, v in data.levels.items()}),
    })


def cohort_description(cohort, data: ModelData) -> dict[str, str]:
    """What predictions need to know about the fitted cohort (no patient-level data).

    ``covariate_ranges``: min and max of each numeric column (predictions outside get a
    warning); ``covariate_prevalence``: mean of each binary model covariate (used to
    average over a covariate missing in a patient to predict).
    """
    from .cohort import IMPUTABLE

    ranges = {}
    for column in (*IMPUTABLE, *data.standardisation):
        if column in cohort.data and column != "liver_mets":
            values = cohort.data[column].astype(float).dropna()
            if len(values):
                ranges[column] = [float(values.min()), float(values.max())]
    cov = cohort.covariates()
    prevalence = {name: float(cov[name].mean()) for name in dict.fromkeys(data.pfs2_names + data.irae_names)
                  if name not in data.standardisation and cov[name].notna().any()}
    return {"covariate_ranges": json.dumps(ranges), "covariate_prevalence": json.dumps(prevalence)}


def is_reliable(idata) -> bool:
    """Whether a fit passed the convergence gate."""
    return bool(int(idata.attrs.get("reliable", 0)))
