"""Simulation studies of the rechallenge model: ADEMP runner, sample size, SBC.

* :mod:`~rechallenge.studies.config` -- the study configuration (YAML + dataclasses):
  aims, data-generating scenarios, estimands, methods, replicates, seed.
* :mod:`~rechallenge.studies.runner` -- runs tasks on any ``concurrent.futures``
  executor (process pool by default, dask.distributed for clusters), checkpointing each
  finished replicate so that an interrupted study resumes.
* :mod:`~rechallenge.studies.study` -- :func:`run_study` and :func:`assurance`
  (sample size: how many local patients until a CrI excludes the null with a target
  probability).
* :mod:`~rechallenge.studies.performance` -- bias, empirical/model SE, RMSE, coverage,
  interval width, power and type-I error, each with its Monte Carlo SE (Morris, White &
  Crowther 2019, *Stat Med* 38:2074).
* :mod:`~rechallenge.studies.sbc` and :mod:`~rechallenge.studies.ranks` --
  simulation-based calibration (Talts et al. 2018; Modrák et al. 2023) with the joint
  log-likelihood as a test quantity and simultaneous ECDF uniformity tests
  (Säilynoja et al. 2022).
* :mod:`~rechallenge.studies.plots` -- coverage, bias, assurance, rank histograms and
  ECDF-difference plots.
"""

from .config import (Estimand, Method, SampleSize, Scenario, StudyConfig, StudyConfigError,
                     config_from_dict, load_config, parse_estimand)
from .runner import SerialExecutor, Task, dask_executor, derive_seed, process_executor, run_tasks
from .sbc import SBCConfig, SBCResult, run_sbc, run_toy_sbc
from .study import StudyResult, assurance, run_study

__all__ = [
    "Estimand", "Method", "SampleSize", "Scenario", "StudyConfig", "StudyConfigError", "config_from_dict",
    "load_config", "parse_estimand", "SerialExecutor", "Task", "dask_executor", "derive_seed",
    "process_executor", "run_tasks", "SBCConfig", "SBCResult", "run_sbc", "run_toy_sbc", "StudyResult",
    "assurance", "run_study",
]
