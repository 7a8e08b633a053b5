r"""Simulation-based calibration (SBC) of the rechallenge model.

Each replicate (:func:`sbc_replicate`, run by :func:`run_sbc` through the same
parallel, checkpointed runner as the simulation studies):

1. draws :math:`\tilde\theta` from the model's prior
   (:func:`rechallenge.prior_draws.draw_prior`, the very distributions the PyMC model
   uses), mapped to a :class:`~rechallenge.simtruth.Truth` by
   :func:`rechallenge.truth_io.truth_from_draw`;
2. simulates a cohort from :math:`\tilde\theta` with **exactly** the model's outcome
   process: :func:`rechallenge.simulate.simulate_cohort` with ``exact_times=True``
   (PFS2 :math:`T = \lambda_0 (E/e^{\eta})^{1/k}`, :math:`E \sim \text{Exp}(1)`, not
   rounded to 0.001 month, which would distort the Weibull likelihood of the shortest
   times; the simulator's independent censoring; the irAE outcome from the model's
   sequential logit). No covariate is missing. The covariate
   distribution (:func:`sbc_covariates`) is balanced over tumour types and irAE organs
   so that every level is present and the compiled model's structure never changes;
   SBC is valid for any covariate distribution;
3. fits the model (the same prior unless ``fit_priors`` deliberately differs);
4. ranks :math:`\tilde\theta` among ``thin_to`` = :math:`L` evenly thinned posterior
   draws, for every coefficient, the baseline parameters, the group sds, a few group
   effects, and the joint log-likelihood :math:`\log p(\tilde y \mid \theta)`
   (:func:`joint_loglik`, NumPy with :mod:`rechallenge.loglik`).

Uniformity is tested per quantity (:mod:`rechallenge.studies.ranks`: simultaneous ECDF
test, Holm-adjusted across quantities; chi-square reported alongside). Unreliable fits
are kept (dropping them would condition on the data and break SBC's guarantee); their
number is reported. Replicates whose fit fails are reported and have no ranks.

References: Talts S, Betancourt M, Simpson D, Vehtari A, Gelman A (2018).
Validating Bayesian inference algorithms with simulation-based calibration.
arXiv:1804.06788. Modrák M, Moon AH, Kim S, Bürkner P, Huurre N, Faltejsková K,
Gelman A, Vehtari A (2023). Simulation-based calibration checking for Bayesian
computation: the choice of test quantities shapes sensitivity. *Bayesian Analysis*.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import xarray as xr

from .. import __version__
from .runner import Task, derive_seed, run_tasks

__all__ = ["SBCConfig", "SBCResult", "sbc_covariates", "sbc_replicate", "run_sbc", "joint_loglik",
           "sbc_summary", "normal_toy_replicate", "run_toy_sbc", "DEFAULT_GROUP_LEVELS"]

DEFAULT_GROUP_LEVELS: dict[str, tuple[str, ...]] = {
    "tumour_effect": ("nsclc", "melanoma"), "tumour_effect_irae": ("nsclc",),
    "organ_effect": ("none", "colitis")}
_SCALARS = ("log_median", "log_shape", "logit_cure", "sigma_tumour", "sigma_tumour_irae",
            "sigma_organ", "irae_a_any", "irae_b_severe")


def sbc_covariates():
    """Default covariates with every tumour type and every irAE organ equally likely."""
    from ..simulate import IRAE_ORGANS, TUMOUR_TYPES, CovariateSpec

    return CovariateSpec(tumour_probs={t: 1 / len(TUMOUR_TYPES) for t in TUMOUR_TYPES},
                         organ_probs={o: 1 / (len(IRAE_ORGANS) - 1) for o in IRAE_ORGANS[1:]})


@dataclass(frozen=True)
class SBCConfig:
    """Settings of an SBC run (see the module docstring).

    ``priors`` generate :math:`\\tilde\\theta`; ``fit_priors`` (default: the same) are
    used by the fit. ``shape_multiplier`` != 1 simulates PFS2 with a wrong Weibull
    shape: both exist only to check that SBC detects a broken model.
    """

    n: int = 200
    replicates: int = 200
    seed: int = 0
    spec: Any = "literature"
    priors: Any = "literature"
    fit_priors: Any = None
    sampler: str = "nutpie"
    draws: int = 250
    tune: int = 500
    chains: int = 4
    thin_to: int = 99
    irae_assessed_fraction: float = 0.9
    covariates: Any = field(default_factory=sbc_covariates)
    shape_multiplier: float = 1.0
    group_levels: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_GROUP_LEVELS))
    alpha: float = 0.01


@dataclass(frozen=True)
class SBCResult:
    """Ranks (``rank`` over ``replicate × quantity``; -1 where the fit failed), the
    per-quantity test table, and whether every Holm-adjusted ECDF p-value is >= alpha."""

    ranks: xr.Dataset
    summary: pd.DataFrame
    passed: bool
    L: int
    n_failed: int
    n_unreliable: int
    out_dir: Path | None = None


def _resolve(spec: Any, priors: Any):
    from ..modelspec import ModelSpec, load_spec
    from ..priors import resolve_priors

    return (spec if isinstance(spec, ModelSpec) else load_spec(spec)), resolve_priors(priors)


def _levels_all() -> dict[str, tuple[str, ...]]:
    from ..simulate import IRAE_ORGANS, TUMOUR_TYPES

    return {"tumour_type": TUMOUR_TYPES, "prior_irae_organ": IRAE_ORGANS, "centre": ("all",)}


def _stacked(ds: xr.Dataset, var: str, idx: np.ndarray | None = None) -> xr.DataArray:
    da = ds[var].stack(_sample=("chain", "draw")).transpose("_sample", ...)
    return da.isel(_sample=idx) if idx is not None else da


def _params(ds: xr.Dataset, md, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Parameters as arrays with a leading sample axis, aligned with the data's levels."""
    out = {}
    for var, dim, names in (("log_hr", "pfs2_covariate", md.pfs2_names), ("log_or", "irae_covariate", md.irae_names),
                            ("tumour_effect", "tumour_type", md.levels["tumour_type"]),
                            ("tumour_effect_irae", "tumour_type", md.levels["tumour_type"]),
                            ("organ_effect", "prior_irae_organ", md.levels["prior_irae_organ"])):
        if var in ds:
            da = _stacked(ds, var, idx)
            out[var] = da.sel({dim: list(names)}).values if len(names) else np.zeros((da.sizes["_sample"], 0))
    for var in ("log_median", "log_shape", "logit_cure", "irae_a_any", "irae_b_severe"):
        if var in ds:
            out[var] = _stacked(ds, var, idx).values
    return out


def joint_loglik(md, p: Mapping[str, np.ndarray]) -> np.ndarray:
    r"""Joint log-likelihood :math:`\log p(y \mid \theta_s)` of a cohort for each draw ``s``.

    PFS2 (Weibull PH, optional cure) plus irAE recurrence (sequential logit) summed over
    patients, with :mod:`rechallenge.loglik`'s formulas -- the ones the PyMC model uses.
    ``md`` is :class:`rechallenge.model_data.ModelData` without missing covariates and
    without centre effects; ``p`` holds arrays with a leading draw axis (see ``_params``).
    """
    from ..loglik import irae_loglik, survival_loglik, weibull_terms

    spec = md.spec
    if md.expanded or "centre" in spec.pfs2_groups or spec.baseline != "weibull":
        raise ValueError("joint_loglik needs complete covariates, no centre effects and a Weibull baseline")
    eta = p["log_hr"] @ md.x_pfs2.T
    if "tumour_type" in spec.pfs2_groups:
        eta = eta + p["tumour_effect"][:, md.tumour_idx]
    log_h, cum_h = weibull_terms(np, md.time[None, :], p["log_median"][:, None], p["log_shape"][:, None], eta)
    cure = p["logit_cure"][:, None] if spec.cure_fraction else None
    ll = survival_loglik(np, md.event[None, :], log_h, cum_h, cure).sum(axis=1)
    if spec.has_irae:
        zeta = p["log_or"] @ md.x_irae.T
        if "tumour_type" in spec.irae_groups:
            zeta = zeta + p["tumour_effect_irae"][:, md.tumour_idx]
        if "prior_irae_organ" in spec.irae_groups:
            zeta = zeta + p["organ_effect"][:, md.organ_idx]
        ll = ll + irae_loglik(np, md.y_irae[None, :], p["irae_a_any"][:, None], p["irae_b_severe"][:, None],
                              zeta).sum(axis=1)
    return ll


def _quantities(posterior: xr.Dataset, group_levels: Mapping[str, tuple[str, ...]]) -> list[tuple[str, str, str | None, str | None]]:
    """``(name, var, dim, label)`` of every ranked parameter present in the posterior."""
    out = []
    for var, dim in (("log_hr", "pfs2_covariate"), ("log_or", "irae_covariate")):
        if var in posterior:
            out += [(f"{var}[{c}]", var, dim, str(c)) for c in posterior[dim].values]
    out += [(v, v, None, None) for v in _SCALARS if v in posterior]
    for var, labels in group_levels.items():
        if var in posterior:
            dim = [d for d in posterior[var].dims if d not in ("chain", "draw")][0]
            present = set(map(str, posterior[dim].values))
            out += [(f"{var}[{lab}]", var, dim, lab) for lab in labels if lab in present]
    return out


@dataclass(frozen=True)
class SBCTask:
    spec: Any
    priors: Any
    fit_priors: Any
    n: int
    covariates: Any
    irae_assessed_fraction: float
    shape_multiplier: float
    sampler: str
    draws: int
    tune: int
    chains: int
    thin_to: int
    group_levels: Mapping[str, tuple[str, ...]]
    replicate: int
    seeds: Mapping[str, int]


def sbc_replicate(task: SBCTask) -> dict[str, Any]:
    """One SBC replicate: draw, simulate, fit, rank (see the module docstring)."""
    from ..cohort import validate_cohort
    from ..fit import fit
    from ..model_data import prepare_data
    from ..prior_draws import draw_prior
    from ..simulate import simulate_cohort
    from ..truth_io import truth_from_draw
    from .ranks import rank_of, thin_indices

    s = task.seeds
    theta = draw_prior(task.spec, task.priors, _levels_all(), draws=1, seed=s["theta"])
    truth = truth_from_draw(theta, 0, task.spec)
    # a shape multiplier != 1 simulates from a deliberately different model (the ranks
    # still compare the fit with the prior draw theta)
    data_truth = replace(truth, shape=truth.shape * task.shape_multiplier) if task.shape_multiplier != 1 else truth
    data = simulate_cohort(task.n, truth=data_truth, seed=s["data"], covariates=task.covariates,
                           irae_assessed_fraction=task.irae_assessed_fraction, exact_times=True).data
    idata = fit(data, task.spec, task.fit_priors, sampler=task.sampler, draws=task.draws, tune=task.tune,
                chains=task.chains, seed=s["fit"], progressbar=False, log_likelihood=False, cores=1)
    post = idata.posterior
    idx = thin_indices(post.sizes["chain"] * post.sizes["draw"], task.thin_to)

    rng = np.random.default_rng(s["ties"])
    ranks, values = {}, {}
    for name, var, dim, label in _quantities(post, task.group_levels):
        draws = _stacked(post, var, idx)
        true = theta[var].isel(chain=0, draw=0)
        if dim is not None:
            draws, true = draws.sel({dim: label}), true.sel({dim: label})
        values[name] = float(true)
        ranks[name] = rank_of(float(true), draws.values, rng)
    md = prepare_data(validate_cohort(data, required=sorted(task.spec.required_columns()),
                                      extra=task.spec.extra_types), task.spec)
    ll_true = float(joint_loglik(md, _params(theta, md))[0])
    ranks["loglik"] = rank_of(ll_true, joint_loglik(md, _params(post, md, idx)), rng)
    values["loglik"] = ll_true
    return {"replicate": task.replicate, "ranks": ranks, "theta": values, "L": task.thin_to,
            "reliable": bool(int(idata.attrs["reliable"])), "diagnostics": json.loads(idata.attrs["diagnostics"]),
            "n_events": int(idata.attrs["n_events"])}


# --------------------------------------------------------------------------- run and summarise


def sbc_summary(ranks: xr.Dataset, alpha: float = 0.01) -> pd.DataFrame:
    """Per quantity: replicates, chi-square statistic and p, ECDF p, Holm-adjusted ECDF p
    and ``flagged`` (adjusted p < ``alpha``)."""
    from .ranks import chi2_uniformity, ecdf_uniformity, holm

    L = int(ranks.attrs["L"])
    rows = []
    for q in ranks["quantity"].values:
        r = ranks["rank"].sel(quantity=q).values
        r = r[r >= 0]
        stat, p_chi, bins = chi2_uniformity(r, L)
        rows.append({"quantity": str(q), "n": int(r.size), "chi2": stat, "chi2_bins": bins, "chi2_p": p_chi,
                     "ecdf_p": ecdf_uniformity(r, L)})
    df = pd.DataFrame(rows)
    df["ecdf_p_holm"] = holm(df["ecdf_p"].to_numpy())
    df["flagged"] = df["ecdf_p_holm"] < alpha
    return df


def _replicate_of(key: str, record: Mapping[str, Any]) -> int:
    if "replicate" in record:
        return int(record["replicate"])
    return int(str(record.get("key", key)).rsplit("/r", 1)[-1])  # a failed task: from its key


def _ranks_dataset(records: Mapping[str, Mapping[str, Any]], L: int) -> xr.Dataset:
    recs = [dict(r, replicate=_replicate_of(k, r)) for k, r in records.items()]
    recs.sort(key=lambda r: r["replicate"])
    names: list[str] = []
    for r in recs:
        for q in (r.get("ranks") or {}):
            if q not in names:
                names.append(q)
    rank = np.full((len(recs), len(names)), -1, dtype=np.int64)
    for i, r in enumerate(recs):
        for j, q in enumerate(names):
            if r.get("status") == "ok" and q in (r.get("ranks") or {}):
                rank[i, j] = int(r["ranks"][q])
    ok = np.array([r.get("status") == "ok" for r in recs])
    reliable = np.array([bool(r.get("reliable", False)) for r in recs])
    reps = [r["replicate"] for r in recs]
    return xr.Dataset({"rank": (("replicate", "quantity"), rank), "failed": ("replicate", ~ok),
                       "reliable": ("replicate", reliable & ok)},
                      coords={"replicate": reps, "quantity": names}, attrs={"L": int(L)})


def _finish(records, L: int, alpha: float, out_dir: Path | None, plots: bool) -> SBCResult:
    ranks = _ranks_dataset(records, L)
    summary = sbc_summary(ranks, alpha)
    result = SBCResult(ranks=ranks, summary=summary, passed=bool(not summary["flagged"].any()), L=L,
                       n_failed=int(ranks["failed"].sum()),
                       n_unreliable=int((~ranks["reliable"].values & ~ranks["failed"].values).sum()),
                       out_dir=out_dir)
    if out_dir is not None:
        from .._resources import atomic_write_text
        from .study import save_netcdf

        save_netcdf(ranks.assign(failed=ranks["failed"].astype(np.int8), reliable=ranks["reliable"].astype(np.int8)),
                    out_dir / "ranks.nc")
        atomic_write_text(out_dir / "sbc_summary.csv", summary.to_csv(index=False))
        if plots:
            from .plots import save_sbc_plots

            save_sbc_plots(result, out_dir / "plots", alpha=alpha)
    return result


def _fingerprint(cfg: SBCConfig, spec, priors, fit_priors) -> str:
    d = {f.name: getattr(cfg, f.name) for f in fields(cfg)
         if f.name not in ("replicates", "spec", "priors", "fit_priors", "covariates")}
    d.update(spec=spec.hash(), priors=priors.hash(), fit_priors=fit_priors.hash(), covariates=repr(cfg.covariates),
             rechallenge_version=__version__)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def run_sbc(config: SBCConfig, out_dir: str | Path, *, executor: cf.Executor | None = None, workers: int = 2,
            progress: bool = True, plots: bool = True) -> SBCResult:
    """Run (or resume) SBC and write ``ranks.nc``, ``sbc_summary.csv`` and ``plots/``."""
    import yaml

    from .study import guard_directory

    out_dir = Path(out_dir)
    spec, priors = _resolve(config.spec, config.priors)
    fit_priors = priors if config.fit_priors is None else _resolve(spec, config.fit_priors)[1]
    fp = _fingerprint(config, spec, priors, fit_priors)
    guard_directory(out_dir, fp, yaml.safe_dump({"fingerprint": fp, "rechallenge_version": __version__,
                                                  "replicates": config.replicates}), "sbc")
    tasks = []
    for r in range(config.replicates):
        seeds = {k: derive_seed(config.seed, "sbc", r, k) for k in ("theta", "data", "fit", "ties")}
        tasks.append(Task(key=f"sbc/r{r:05d}", payload=SBCTask(
            spec=spec, priors=priors, fit_priors=fit_priors, n=config.n, covariates=config.covariates,
            irae_assessed_fraction=config.irae_assessed_fraction, shape_multiplier=config.shape_multiplier,
            sampler=config.sampler, draws=config.draws, tune=config.tune, chains=config.chains,
            thin_to=config.thin_to, group_levels=dict(config.group_levels), replicate=r, seeds=seeds)))
    records = run_tasks(tasks, sbc_replicate, out_dir, executor=executor, workers=workers, progress=progress,
                        desc="SBC")
    return _finish(records, config.thin_to, config.alpha, out_dir, plots)


# --------------------------------------------------------------------------- conjugate toy


def normal_toy_replicate(payload: Mapping[str, Any]) -> dict[str, Any]:
    r"""SBC replicate of a conjugate normal model (checks the SBC machinery itself).

    :math:`\theta \sim N(0, \tau^2)`, :math:`y_i \sim N(\theta, \sigma^2)`, exact posterior
    :math:`N(m, v)`, :math:`v = (1/\tau^2 + n/\sigma^2)^{-1}`, :math:`m = v\sum y_i/\sigma^2`.
    ``sd_factor`` and ``shift`` (in posterior SDs) make the "posterior" wrong on purpose.
    """
    rng = np.random.default_rng(int(payload["seed"]))
    tau, sigma, n, L = (float(payload.get("tau", 1.0)), float(payload.get("sigma", 1.0)),
                        int(payload.get("n_obs", 10)), int(payload.get("L", 99)))
    theta = rng.normal(0.0, tau)
    y = rng.normal(theta, sigma, n)
    v = 1.0 / (1.0 / tau ** 2 + n / sigma ** 2)
    m = v * y.sum() / sigma ** 2 + float(payload.get("shift", 0.0)) * math.sqrt(v)
    draws = rng.normal(m, math.sqrt(v) * float(payload.get("sd_factor", 1.0)), L)
    loglik = lambda t: -0.5 * np.sum((y[None, :] - np.atleast_1d(t)[:, None]) ** 2, axis=1) / sigma ** 2  # noqa: E731
    from .ranks import rank_of

    return {"replicate": int(payload["replicate"]), "L": L, "reliable": True,
            "ranks": {"theta": rank_of(theta, draws, rng), "loglik": rank_of(float(loglik(theta)[0]), loglik(draws), rng)}}


def run_toy_sbc(out_dir: str | Path, *, replicates: int = 200, L: int = 99, sd_factor: float = 1.0,
                shift: float = 0.0, n_obs: int = 10, seed: int = 0, alpha: float = 0.01,
                executor: cf.Executor | None = None, workers: int = 2, progress: bool = False,
                plots: bool = False) -> SBCResult:
    """SBC of the conjugate normal toy through the study runner (see :func:`normal_toy_replicate`)."""
    tasks = [Task(key=f"toy/r{r:05d}", payload={"replicate": r, "seed": derive_seed(seed, "toy", r), "L": L,
                                                "sd_factor": sd_factor, "shift": shift, "n_obs": n_obs})
             for r in range(replicates)]
    records = run_tasks(tasks, normal_toy_replicate, out_dir, executor=executor, workers=workers,
                        progress=progress, desc="toy SBC")
    return _finish(records, L, alpha, Path(out_dir), plots)
