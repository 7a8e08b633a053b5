r"""True parameters of a simulation: YAML files, and the map to and from model draws.

A :class:`rechallenge.simtruth.Truth` is what :func:`rechallenge.simulate.simulate_cohort`
simulates from; a fit's ``posterior`` (or :func:`rechallenge.prior_draws.draw_prior`)
holds the same quantities under the model's variable names. This module converts
between the two, so that simulation studies and simulation-based calibration compare
like with like:

==========================  ==============================================================
Truth field                 model variable (posterior name)
==========================  ==============================================================
``beta[j]``                 ``log_hr[j]`` (dim ``pfs2_covariate``)
``log_median_ref``          ``log_median``
``shape``                   ``exp(log_shape)``
``cure_fraction``           ``expit(logit_cure)`` (0 without a cure fraction)
``sigma_tumour``            ``sigma_tumour``; ``tumour_effects`` ↔ ``tumour_effect``
``sigma_centre``            ``sigma_centre`` (see note below)
``gamma[j]``                ``log_or[j]`` (dim ``irae_covariate``)
``a_any``                   ``irae_a_any``
``a_3``                     :math:`\operatorname{logit}(\sigma(a)\,\sigma(b))`, ``b`` = ``irae_b_severe``
``sigma_tumour_irae``       ``sigma_tumour_irae``; ``tumour_effects_irae`` ↔ ``tumour_effect_irae``
``sigma_organ``             ``sigma_organ``; ``organ_effects`` ↔ ``organ_effect``
==========================  ==============================================================

The sequential-logit second-stage intercept is
:math:`b = \operatorname{logit}\{\sigma(a_3)/\sigma(a_\text{any})\}`, so
:math:`\sigma(a_3) = \sigma(a_\text{any})\,\sigma(b)` (Agresti 2010, *Analysis of
Ordinal Categorical Data*, ch. 4); both directions are computed on the log scale.

Coefficients the specification leaves out are 0 in the truth (the data then carry no
such effect). Group effects are matched by level name. Centre effects are not mapped:
the model's centre levels are ``tumour/centre`` pairs (centre within tumour type) while
the simulator's are centre labels, so a truth from a draw keeps ``sigma_centre`` and
lets the simulator draw the centre effects.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from ._resources import atomic_write_text, read_yaml
from .errors import RechallengeError
from .modelspec import ModelSpec
from .simtruth import IRAE_COVARIATES, PFS2_COVARIATES, SimulationError, Truth, default_truth

__all__ = ["read_truth", "write_truth", "truth_to_yaml", "merge_truth", "truth_from_draw",
           "truth_to_values"]

_DICT_FIELDS = ("beta", "gamma", "tumour_effects", "centre_effects", "tumour_effects_irae",
                "organ_effects")
_HEADER = ("# True parameters of a simulated cohort (rechallenge.simtruth.Truth).\n"
           "# beta: PFS2 log hazard ratios; gamma: irAE log odds ratios; log_median_ref: log\n"
           "# median PFS2 (months) of the reference patient; a_any / a_3: logit P(any irAE\n"
           "# recurrence) / logit P(grade >= 3) of the reference patient; *_effects: realised\n"
           "# group effects. Read back with rechallenge.truth_io.read_truth.\n")


def _log_sigmoid(x: float) -> float:
    return -float(np.logaddexp(0.0, -x))


def merge_truth(base: Truth, changes: Mapping[str, Any]) -> Truth:
    """A copy of ``base`` with ``changes`` applied (validated again).

    Dictionary fields (``beta``, ``gamma``, group effects) are merged key by key, so
    ``{"beta": {"nlr": 0.0}}`` changes only the NLR log hazard ratio; other fields are
    replaced. Unknown fields raise :class:`rechallenge.simtruth.SimulationError`.
    """
    if not isinstance(changes, Mapping):
        raise SimulationError(f"truth changes must be a mapping, got {type(changes).__name__}")
    names = {f.name for f in fields(Truth)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise SimulationError(f"unknown truth fields {unknown} (expected some of {sorted(names)})")
    data = base.to_dict()
    for key, value in changes.items():
        if key in _DICT_FIELDS and isinstance(value, Mapping) and data.get(key) is not None:
            data[key] = {**data[key], **{str(k): v for k, v in value.items()}}
        else:
            data[key] = value
    return Truth.from_dict(data)


def truth_to_yaml(truth: Truth) -> str:
    """YAML text of a truth, with a comment header (read back by :func:`read_truth`)."""
    return _HEADER + truth.to_yaml()


def write_truth(truth: Truth, path: str | Path) -> Path:
    """Write a truth as YAML, atomically (temporary file + rename); returns the path."""
    path = Path(path)
    atomic_write_text(path, truth_to_yaml(truth))
    return path


def read_truth(path: str | Path, *, base: Truth | None = None) -> Truth:
    """Read a truth written by :func:`write_truth` (or by hand).

    Parameters
    ----------
    path
        YAML file with the fields of :class:`~rechallenge.simtruth.Truth`.
    base
        When given, the file may hold only some fields; the others come from ``base``
        (dictionaries merged key by key, see :func:`merge_truth`). Without it the file
        must be complete.

    Raises
    ------
    rechallenge.errors.RechallengeError
        If the file cannot be read, is not YAML, or does not describe a valid truth
        (the message names the file and the field).
    """
    path = Path(path)
    data = read_yaml(path, "truth file", RechallengeError)
    if not isinstance(data, Mapping):
        raise RechallengeError(f"truth file {path}: expected a mapping of truth fields, "
                               f"got {type(data).__name__}")
    try:
        return merge_truth(base, data) if base is not None else Truth.from_dict(data)
    except SimulationError as exc:
        raise RechallengeError(f"truth file {path}: {exc}") from None


# --------------------------------------------------------------------------- draws <-> truth


def _point(dataset: xr.Dataset, var: str, index: int) -> xr.DataArray:
    da = dataset[var]
    stacked = da.stack(_sample=("chain", "draw")) if "chain" in da.dims else da.rename(draw="_sample")
    n = stacked.sizes["_sample"]
    if not -n <= index < n:
        raise IndexError(f"draw index {index} out of range for {n} draws")
    return stacked.isel(_sample=index).drop_vars(["_sample", "chain", "draw"], errors="ignore")


def _by_level(da: xr.DataArray) -> dict[str, float]:
    dim = da.dims[0]
    return {str(k): float(v) for k, v in zip(da[dim].values, da.values)}


def truth_from_draw(dataset: xr.Dataset, index: int, spec: ModelSpec) -> Truth:
    """The truth of one draw of the model's parameters (see the module table).

    Parameters
    ----------
    dataset
        Draws shaped like a posterior, dims ``(chain, draw, ...)``: a fit's
        ``posterior`` or :func:`rechallenge.prior_draws.draw_prior`.
    index
        Draw number, counting over ``(chain, draw)`` in C order.
    spec
        The model specification the draws belong to (Weibull baseline only; the
        simulator has no piecewise-exponential baseline, and its continuous extra
        columns use a fixed scale, not the cohort SD).

    Returns
    -------
    Truth
        Coefficients not in ``spec`` are 0; group sds and effects of groups not in
        ``spec`` are 0 / absent; without an irAE part ``gamma`` is 0 and ``a_any``,
        ``a_3`` are the defaults'.
    """
    if spec.baseline != "weibull":
        raise SimulationError("truth_from_draw: the simulator has a Weibull baseline only, "
                              f"not {spec.baseline!r}")
    cont = [e.name for e in spec.extra if e.type == "continuous"]
    if cont:
        raise SimulationError(f"truth_from_draw: continuous extra columns {cont} are per cohort SD in "
                              "the model but per 10 units in the simulator")
    get = lambda var: _point(dataset, var, index)  # noqa: E731
    has = lambda var: var in dataset  # noqa: E731
    default = default_truth()
    beta = {k: 0.0 for k in PFS2_COVARIATES}
    if has("log_hr"):
        beta.update(_by_level(get("log_hr")))
    gamma = {k: 0.0 for k in IRAE_COVARIATES}
    a_any, a_3 = default.a_any, default.a_3
    if spec.has_irae:
        if has("log_or") and dataset["log_or"].sizes.get("irae_covariate", 0):
            gamma.update(_by_level(get("log_or")))
        a_any = float(get("irae_a_any"))
        b = float(get("irae_b_severe"))
        log_p3 = _log_sigmoid(a_any) + _log_sigmoid(b)
        a_3 = log_p3 - math.log(-math.expm1(log_p3))
    cure = float(1.0 / (1.0 + math.exp(-float(get("logit_cure"))))) if has("logit_cure") else 0.0
    scalar = lambda var: float(get(var)) if has(var) else 0.0  # noqa: E731
    effects = lambda var: _by_level(get(var)) if has(var) else None  # noqa: E731
    return Truth(
        beta=beta, log_median_ref=float(get("log_median")), shape=math.exp(float(get("log_shape"))),
        cure_fraction=cure, sigma_tumour=scalar("sigma_tumour"), sigma_centre=scalar("sigma_centre"),
        gamma=gamma, a_any=a_any, a_3=a_3, sigma_tumour_irae=scalar("sigma_tumour_irae"),
        sigma_organ=scalar("sigma_organ"), tumour_effects=effects("tumour_effect"),
        centre_effects=None, tumour_effects_irae=effects("tumour_effect_irae"),
        organ_effects=effects("organ_effect"))


def _vector(values: Mapping[str, float], names, dim: str) -> xr.DataArray:
    names = list(names)
    return xr.DataArray(np.array([float(values.get(n, 0.0)) for n in names], dtype=float),
                        dims=(dim,), coords={dim: names})


def truth_to_values(truth: Truth, spec: ModelSpec) -> dict[str, xr.DataArray]:
    """The truth under the model's variable names (inverse of :func:`truth_from_draw`).

    Returns
    -------
    dict
        ``{variable: xarray.DataArray}``: 0-d arrays for scalars (``log_median``,
        ``log_shape``, ``logit_cure`` when the spec has a cure fraction, the sigmas,
        ``irae_a_any``, ``irae_b_severe``, ``irae_p_any_ref``, ``irae_p_grade3plus_ref``)
        and labelled vectors with the posterior's dims (``log_hr`` over
        ``pfs2_covariate``, ``log_or`` over ``irae_covariate``, group effects over their
        level names, for the levels the truth holds), so that
        ``values["log_hr"].sel(pfs2_covariate="tfi_le6")`` aligns with a posterior.
        Only variables of the specification's model are returned.
    """
    from .prior_draws import pfs2_names

    out: dict[str, xr.DataArray] = {}
    scalar = lambda x: xr.DataArray(float(x))  # noqa: E731
    out["log_hr"] = _vector(truth.beta, pfs2_names(spec), "pfs2_covariate")
    if spec.baseline == "weibull":
        out["log_median"] = scalar(truth.log_median_ref)
        out["log_shape"] = scalar(math.log(truth.shape))
    if spec.cure_fraction:
        pi = truth.cure_fraction
        out["logit_cure"] = scalar(math.log(pi) - math.log1p(-pi) if pi > 0 else -math.inf)
    groups = [("tumour_type" in spec.pfs2_groups, "sigma_tumour", "tumour_effect",
               truth.sigma_tumour, truth.tumour_effects, "tumour_type"),
              ("centre" in spec.pfs2_groups, "sigma_centre", None, truth.sigma_centre, None, "centre")]
    if spec.has_irae:
        out["log_or"] = _vector(truth.gamma, spec.irae_covariates or (), "irae_covariate")
        a = truth.a_any
        log_ratio = (_log_sigmoid(truth.a_3) - _log_sigmoid(a))  # log P(>=3 | any)
        b = log_ratio - math.log(-math.expm1(log_ratio))
        out.update(irae_a_any=scalar(a), irae_b_severe=scalar(b),
                   irae_p_any_ref=scalar(math.exp(_log_sigmoid(a))),
                   irae_p_grade3plus_ref=scalar(math.exp(_log_sigmoid(truth.a_3))))
        groups += [("tumour_type" in spec.irae_groups, "sigma_tumour_irae", "tumour_effect_irae",
                    truth.sigma_tumour_irae, truth.tumour_effects_irae, "tumour_type"),
                   ("prior_irae_organ" in spec.irae_groups, "sigma_organ", "organ_effect",
                    truth.sigma_organ, truth.organ_effects, "prior_irae_organ")]
    for used, sd_var, effect, sigma, values, dim in groups:
        if not used:
            continue
        out[sd_var] = scalar(sigma)
        if effect is not None and values is not None:
            out[effect] = _vector(values, list(values), dim)
    return out

