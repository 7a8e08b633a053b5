"""Run a simulation study (ADEMP) and its sample-size / assurance analysis.

:func:`run_study` expands a :class:`~rechallenge.studies.config.StudyConfig` into tasks
(scenario × replicate × method), runs them with :func:`rechallenge.studies.runner.run_tasks`
(parallel, checkpointed, resumable), and writes into the output directory:

* ``study.yaml`` -- the configuration and its fingerprint (a rerun into the same
  directory must have the same fingerprint; more replicates may be added);
* ``replicates/<scenario>/<method>/r00000.json`` -- one record per replicate;
* ``raw.nc`` and ``summary.nc`` -- :func:`~rechallenge.studies.performance.raw_dataset`
  and :func:`~rechallenge.studies.performance.summarise`; ``summary.csv`` (95% level);
* ``assurance.csv`` when the configuration has a ``sample_size`` section;
* ``plots/*.png``.

All replicates of a scenario share their simulated cohorts across methods (common
random numbers: the data seed depends on the scenario and replicate only).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import xarray as xr
import yaml

from .. import __version__
from .._resources import atomic_write_text
from .config import Method, SampleSize, Scenario, StudyConfig, StudyConfigError, parse_estimand
from .replicate import StudyTask, study_replicate
from .runner import Task, derive_seed, run_tasks

__all__ = ["StudyResult", "run_study", "assurance", "study_tasks", "resolve_method_priors",
           "save_netcdf", "guard_directory"]


@dataclass(frozen=True)
class StudyResult:
    """Results of :func:`run_study`."""

    config: StudyConfig
    raw: xr.Dataset
    summary: xr.Dataset
    out_dir: Path
    assurance: pd.DataFrame | None = None
    smallest_n: int | None = None
    n_failed: int = 0
    first_error: str | None = None

    def table(self, level: float = 0.95) -> pd.DataFrame:
        """Tidy performance table (:func:`~rechallenge.studies.performance.summary_frame`)."""
        from .performance import summary_frame

        return summary_frame(self.summary, level)


@lru_cache(maxsize=16)
def resolve_method_priors(priors: str, robust_weight: float = 0.5):
    """The PriorSet of a method: ``literature``; ``vague`` / ``local_only`` (the vague set);
    ``robust`` (literature rebuilt with ``robust_weight`` on every ratio parameter); or a
    saved prior-set file. Cached per process (prior sets are immutable; a file is read
    once)."""
    from ..evidence_table import read_evidence
    from ..priors import _all_parameters, build_prior_set, load_prior_spec, resolve_priors

    if priors == "local_only":
        return resolve_priors("vague")
    if priors == "robust":
        spec = load_prior_spec()
        table = read_evidence(None, known_parameters=_all_parameters(spec), discount_names=spec["discounts"])
        return build_prior_set(spec, table, name=f"literature_robust{robust_weight:g}",
                               robust_weight=robust_weight)[0]
    return resolve_priors(priors)


def study_tasks(config: StudyConfig) -> list[Task]:
    """All tasks, replicate-major (an interrupted study has balanced partial results)."""
    from ..modelspec import load_spec

    cache: dict[Any, Any] = {}

    def priors_of(name: str, weight: float = 0.5):
        key = (name, weight if name == "robust" else None)
        if key not in cache:
            cache[key] = resolve_method_priors(name, weight)
        return cache[key]

    specs = {m.name: load_spec(m.spec) for m in config.methods}
    ss = config.sample_size
    # the grid scenarios share the base scenario's truth draws (design prior), so that
    # the assurance curve compares cohort sizes on common random numbers
    grid = {f"{ss.scenario}_n{n}": ss.scenario for n in ss.n} if ss else {}
    # nested grid: every size takes the first n patients of one cohort of the largest size
    nested_n = max(ss.n) if ss and ss.nested else None
    tasks = []
    for r in range(config.replicates):
        for sc in config.all_scenarios():
            truth_seed = derive_seed(config.seed, grid.get(sc.name, sc.name), r, "truth")
            nested = nested_n is not None and sc.name in grid
            # "/" cannot occur in a scenario name, so this seed is no scenario's own
            data_seed = derive_seed(config.seed, f"{ss.scenario}/nested" if nested else sc.name, r, "data")
            for m in config.methods:
                design = priors_of(sc.design_prior) if sc.design_prior else None
                tasks.append(Task(key=f"{sc.name}/{m.name}/r{r:05d}", payload=StudyTask(
                    scenario=sc, method=m.name, spec=specs[m.name], priors=priors_of(m.priors, m.robust_weight),
                    design_prior=design, sampler=m.sampler, draws=m.draws, tune=m.tune, chains=m.chains,
                    estimands=config.estimands, replicate=r, truth_seed=truth_seed, data_seed=data_seed,
                    fit_seed=derive_seed(config.seed, sc.name, r, "fit", m.name),
                    simulate_n=nested_n if nested else None)))
    return tasks


def save_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a dataset to NetCDF through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ds.to_netcdf(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def guard_directory(out_dir: Path, fingerprint: str, text: str, what: str = "study") -> None:
    """Refuse to mix the results of two different studies in one directory."""
    marker = out_dir / f"{what}.yaml"
    if marker.exists():
        try:
            old = yaml.safe_load(marker.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            old = {}
        if old.get("fingerprint") != fingerprint:
            written_by = old.get("rechallenge_version")
            reason = (f"it was written by rechallenge {written_by or '(version not recorded)'}, "
                      f"this is {__version__}" if written_by != __version__ else
                      f"fingerprint {str(old.get('fingerprint'))[:12]} vs {fingerprint[:12]}")
            raise StudyConfigError(f"{out_dir} holds the results of a different {what} ({reason}); "
                                   "use another --out directory")
    atomic_write_text(marker, text)


def run_study(config: StudyConfig, out_dir: str | Path, *, executor: cf.Executor | None = None,
              workers: int = 2, progress: bool = True, plots: bool = True,
              on_result=None) -> StudyResult:
    """Run (or resume) a study and write its results (see the module docstring).

    Parameters
    ----------
    config
        The study (:func:`rechallenge.studies.config.load_config`).
    out_dir
        Output directory; finished replicates found there are not run again.
    executor
        Any ``concurrent.futures.Executor`` (e.g. a dask ``Client.get_executor()``);
        default a process pool of ``workers`` processes.
    progress
        Show a tqdm progress bar.
    plots
        Write ``plots/*.png``.
    """
    from .performance import assurance_table, raw_dataset, summarise, summary_frame

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"fingerprint": config.fingerprint(), "rechallenge_version": __version__,
                           **config.to_dict()}, sort_keys=False,
                          default_flow_style=None)
    guard_directory(out_dir, config.fingerprint(), text)
    records = run_tasks(study_tasks(config), study_replicate, out_dir, executor=executor, workers=workers,
                        progress=progress, desc="study", on_result=on_result)
    failed = [r for r in records.values() if r.get("status") != "ok"]
    raw = raw_dataset(records, config)
    summary = summarise(raw, exclude_unreliable=config.exclude_unreliable)
    save_netcdf(raw, out_dir / "raw.nc")
    save_netcdf(summary, out_dir / "summary.nc")
    atomic_write_text(out_dir / "summary.csv", summary_frame(summary).to_csv(index=False))
    table, smallest = None, None
    if config.sample_size is not None:
        table, smallest = assurance_table(raw, config.sample_size, exclude_unreliable=config.exclude_unreliable)
        atomic_write_text(out_dir / "assurance.csv", table.to_csv(index=False))
    result = StudyResult(config=config, raw=raw, summary=summary, out_dir=out_dir, assurance=table,
                         smallest_n=smallest, n_failed=len(failed),
                         first_error=failed[0].get("error") if failed else None)
    if plots:
        from .plots import save_study_plots

        save_study_plots(result, out_dir / "plots")
    return result


def assurance(scenario: Scenario, n_grid: Sequence[int], out_dir: str | Path, *,
              estimand: str = "log_hr[tfi_le6]", method: Method | None = None, replicates: int = 200,
              target: float = 0.8, level: float = 0.95, seed: int = 0,
              executor: cf.Executor | None = None, workers: int = 2, progress: bool = True,
              plots: bool = True) -> StudyResult:
    """How many local patients until the estimand's CrI excludes 0 with probability ``target``?

    Runs ``scenario`` at every cohort size of ``n_grid`` (``replicates`` each) and
    estimates, per size, the probability that the ``level`` equal-tailed credible
    interval of ``estimand`` excludes 0 (for ``log_hr[tfi_le6]``: the 95% CrI of the TFI
    hazard ratio excludes 1), with its binomial Monte Carlo SE. With a fixed truth this
    is the (Bayesian) power at that truth; with a scenario ``design_prior`` the truth is
    drawn from it per replicate and the probability is the assurance (O'Hagan &
    Stevens 2001, *Med Decis Making* 21:219).

    Returns
    -------
    StudyResult
        ``result.assurance`` (``n``, ``probability``, ``mcse``, ``replicates``,
        ``n_unreliable``) and ``result.smallest_n`` (``None`` if no size reaches the target).
    """
    method = method or Method(name="literature")
    est = parse_estimand(estimand)
    ss = SampleSize(scenario=scenario.name, n=tuple(sorted({int(n) for n in n_grid})), estimand=est.text,
                    method=method.name, target=float(target), level=float(level), run_base=False)
    config = StudyConfig(aims=f"Sample size: P({level:.0%} CrI of {est.text} excludes 0) >= {target:.0%}",
                         scenarios=(scenario,), estimands=(est,), methods=(method,), replicates=int(replicates),
                         seed=int(seed), sample_size=ss)
    from .config import config_from_dict

    config = config_from_dict(config.to_dict())  # validate as a file would be
    return run_study(config, out_dir, executor=executor, workers=workers, progress=progress, plots=plots)

