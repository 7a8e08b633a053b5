"""One replicate of a simulation study: simulate a cohort, fit it, summarise the estimands.

Runs in a worker process (:func:`study_replicate`); everything it needs travels in a
picklable :class:`StudyTask` (resolved model specification and prior sets included),
so a remote dask worker needs no files. Per estimand the record holds the true value,
the posterior mean (the point estimate), the posterior SD (the model SE), equal-tailed
credible limits at :data:`LEVELS`, and the posterior probability that the quantity is
positive (for a log ratio: P(HR > 1 | data)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import Estimand, Scenario

__all__ = ["LEVELS", "StudyTask", "replicate_cohort", "study_replicate", "scenario_truth", "summarise_draws"]

#: Central credible-interval levels whose coverage is measured.
LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class StudyTask:
    """Everything one replicate needs (all picklable)."""

    scenario: Scenario
    method: str
    spec: Any            # ModelSpec
    priors: Any          # PriorSet used by the method
    design_prior: Any    # PriorSet the truth is drawn from, or None
    sampler: str
    draws: int
    tune: int
    chains: int
    estimands: tuple[Estimand, ...]
    replicate: int
    truth_seed: int
    data_seed: int
    fit_seed: int
    #: Simulate this many patients and keep the first ``scenario.n`` (nested sample-size
    #: grids); None: simulate ``scenario.n``.
    simulate_n: int | None = None


def scenario_truth(scenario: Scenario, design_prior: Any, seed: int):
    """The true parameters of one replicate.

    Fixed: :func:`rechallenge.simulate.default_truth` with the scenario's changes.
    With a design prior: one draw from it under the literature model specification
    (:func:`rechallenge.prior_draws.draw_prior`, all tumour types and organs; the
    data-generating mechanism does not depend on the analysis method's ``spec``), mapped
    by :func:`rechallenge.truth_io.truth_from_draw`, then the scenario's changes.
    """
    from ..simulate import IRAE_ORGANS, TUMOUR_TYPES, default_truth
    from ..truth_io import merge_truth, truth_from_draw

    if design_prior is None:
        return merge_truth(default_truth(), scenario.truth)
    from ..modelspec import load_spec
    from ..prior_draws import draw_prior

    spec = load_spec("literature")

    levels = {"tumour_type": TUMOUR_TYPES, "prior_irae_organ": IRAE_ORGANS, "centre": ("all",)}
    draw = draw_prior(spec, design_prior, levels, draws=1, seed=seed)
    return merge_truth(truth_from_draw(draw, 0, spec), scenario.truth)


def summarise_draws(draws: np.ndarray, levels: tuple[float, ...] = LEVELS) -> dict[str, Any]:
    """Mean, SD, median, equal-tailed limits and P(> 0) of a sample of draws."""
    x = np.asarray(draws, dtype=float).ravel()
    q_lo = [(1 - lev) / 2 for lev in levels]
    lower = np.quantile(x, q_lo)
    upper = np.quantile(x, [1 - q for q in q_lo])
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)), "median": float(np.median(x)),
            "lower": [float(v) for v in lower], "upper": [float(v) for v in upper],
            "p_positive": float(np.mean(x > 0))}


def _estimand_draws(posterior, estimand: Estimand) -> np.ndarray | None:
    if estimand.var not in posterior:
        return None
    da = posterior[estimand.var]
    if estimand.label is not None:
        dim = estimand.dim
        if dim not in da.dims or estimand.label not in set(map(str, da[dim].values)):
            return None
        da = da.sel({dim: estimand.label})
    return da.values


def _true_value(values: dict, estimand: Estimand) -> float:
    da = values.get(estimand.var)
    if da is None:
        return math.nan
    if estimand.label is not None:
        dim = estimand.dim
        if dim not in da.dims or estimand.label not in set(map(str, da[dim].values)):
            return math.nan
        da = da.sel({dim: estimand.label})
    return float(da)


def replicate_cohort(task: StudyTask):
    """The simulated cohort of one replicate (:class:`rechallenge.simulate.SimulatedCohort`).

    PFS2 times are exact (``exact_times=True``). With ``task.simulate_n`` the cohort is
    the first ``scenario.n`` patients of a cohort of that size (patients are independent,
    so this is a cohort of ``scenario.n`` from the same law).
    """
    from ..simulate import CovariateSpec, SimulatedCohort, simulate_cohort

    sc = task.scenario
    truth = scenario_truth(sc, task.design_prior, task.truth_seed)
    cohort = simulate_cohort(task.simulate_n or sc.n, truth=truth, seed=task.data_seed,
                             covariates=CovariateSpec(**sc.covariates), missing=dict(sc.missing),
                             missing_mechanism=sc.mechanism, n_centres=sc.centres,
                             irae_assessed_fraction=sc.irae_assessed_fraction, exact_times=True)
    if task.simulate_n is None or task.simulate_n == sc.n:
        return cohort
    return SimulatedCohort(data=cohort.data.iloc[:sc.n].reset_index(drop=True), truth=cohort.truth)


def study_replicate(task: StudyTask) -> dict[str, Any]:
    """Simulate, fit and summarise one replicate (the worker function of a study).

    PFS2 times are simulated exactly (``simulate_cohort(..., exact_times=True)``): the
    3-decimal rounding of the CSV format creates ties at 0.001 months under extreme
    design-prior draws, which biased coverage studies (see ``simulate_cohort``).
    """
    import json

    from ..fit import fit
    from ..simulate import IRAE_ORGANS, TUMOUR_TYPES
    from ..truth_io import truth_to_values

    sc = task.scenario
    cohort = replicate_cohort(task)
    idata = fit(cohort.data, task.spec, task.priors, sampler=task.sampler, draws=task.draws, tune=task.tune,
                chains=task.chains, seed=task.fit_seed, progressbar=False, log_likelihood=False, cores=1,
                group_levels={"tumour_type": TUMOUR_TYPES, "prior_irae_organ": IRAE_ORGANS})
    values = truth_to_values(cohort.truth, task.spec)
    estimates: dict[str, Any] = {}
    for est in task.estimands:
        draws = _estimand_draws(idata.posterior, est)
        summary = summarise_draws(draws) if draws is not None else None
        estimates[est.text] = {"truth": _true_value(values, est), **(summary or {})}
    diag = json.loads(idata.attrs["diagnostics"])
    return {"scenario": sc.name, "method": task.method, "replicate": task.replicate,
            "seeds": {"truth": task.truth_seed, "data": task.data_seed, "fit": task.fit_seed},
            "estimates": estimates, "reliable": bool(int(idata.attrs["reliable"])),
            "diagnostics": diag, "n_events": int(idata.attrs["n_events"]),
            "levels": list(LEVELS)}
