"""The sampling twin of the PyMC model: same parameters, one fused density node.

:func:`build_fused_model` mirrors :func:`rechallenge.model.build_model` for cohorts where
the model takes its fast form (:func:`rechallenge.model.uses_sufficient_statistics`):
the same parameters (names, dims, initial values; as deterministics of one joined
unconstrained vector), the same traced deterministics, and a log density equal to the
reference model's — but computed by :class:`rechallenge.fused_density.FusedDensity`, so
the gradient nutpie evaluates at every leapfrog step is one compiled kernel instead of a
~200-node graph.

Parameters get flat priors in this twin (their priors are inside the kernel), so it is
used only for sampling the posterior: prior predictive draws, pointwise
log-likelihoods and every other use of the model go through the reference model.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.logprob.transforms import LogTransform

from . import loglik
from .fused_density import DATA, PARAMETERS, fused_density
from .mixture import NormalMixture, stack_mixtures
from .model import GROUP_INPUTS, build_model, model_inputs, uses_sufficient_statistics
from .model_data import ModelData
from .prior_draws import GROUP_EFFECTS, coefficient_priors, severe_given_any_prior
from .priorset import PriorSet


def can_fuse(data: ModelData, prior_only: bool = False) -> bool:
    """Whether the fused density covers this cohort's model (the fast form, with likelihood)."""
    return uses_sufficient_statistics(data) and not prior_only


def _entry_mixture(priors: PriorSet, key: tuple[str, str]) -> NormalMixture:
    return priors[key].distribution


def prior_table(data: ModelData, priors: PriorSet) -> dict[str, np.ndarray]:
    """Prior constants of the kernel: one normal-mixture row per coefficient/baseline
    parameter (log-HRs, log median, log shape, then log-ORs, a, b) and the half-normal
    scales of the four group SDs (1 where a group is absent)."""
    spec = data.spec
    rows = list(coefficient_priors(spec, priors, "pfs2"))
    rows += [_entry_mixture(priors, ("pfs2", "baseline_median")), _entry_mixture(priors, ("pfs2", "weibull_shape"))]
    if spec.has_irae:
        rows += list(coefficient_priors(spec, priors, "irae"))
        rows += [_entry_mixture(priors, ("irae", "baseline_any")), severe_given_any_prior(priors)]
    w, mu, sd = stack_mixtures(rows)
    used = {"pfs2": spec.pfs2_groups, "irae": spec.irae_groups}
    scales = [priors[(outcome, key)].halfnormal_scale if dim in used[outcome] else 1.0
              for _, outcome, key, _, dim in GROUP_EFFECTS]
    return {"prior_mean": mu, "prior_precision": 1.0 / sd ** 2,
            "prior_log_norm": np.log(w) - np.log(sd) - 0.5 * np.log(2.0 * np.pi),
            "group_sd_scale": np.asarray(scales, dtype=float)}


#: Name of the fused model's single free variable: all parameters, unconstrained, joined.
FUSED_VECTOR = "fused_parameters"


def parameter_layout(reference: pm.Model) -> dict[str, tuple[int, int, tuple[int, ...], bool]]:
    """Where each free parameter of the reference model sits in the fused vector:
    ``name -> (start, size, shape, log-transformed)``, in the reference's order."""
    point = reference.initial_point()
    layout, start = {}, 0
    for rv in reference.free_RVs:
        transform = reference.rvs_to_transforms.get(rv)
        if transform is not None and not isinstance(transform, LogTransform):  # pragma: no cover
            raise TypeError(f"{rv.name}: transform {transform} is not supported by the fused model")
        shape = np.shape(point[reference.rvs_to_values[rv].name])
        size = int(np.prod(shape, dtype=int))
        layout[rv.name] = (start, size, shape, transform is not None)
        start += size
    return layout


def fused_point(reference: pm.Model, point: dict[str, np.ndarray]) -> np.ndarray:
    """A point of the reference model (its value variables) as the fused vector."""
    return np.concatenate([np.ravel(point[reference.rvs_to_values[rv].name]) for rv in reference.free_RVs])


def build_fused_model(data: ModelData, priors: PriorSet, reference: pm.Model | None = None) -> pm.Model:
    """The fused twin of ``build_model(data, priors)`` (see module docstring).

    Its one free variable, :data:`FUSED_VECTOR`, joins the reference model's value
    variables (group SDs as log σ) in the reference's order, with the same initial value;
    each reference parameter is a deterministic of it under its own name and dims.

    Parameters
    ----------
    data
        Prepared arrays; the model must take its fast form (:func:`can_fuse`).
    priors
        The prior set of the reference model.
    reference
        The reference model, if already built (its parameters and initial point are copied).
    """
    if not can_fuse(data):
        raise ValueError("the fused density needs the Weibull model without cure fraction "
                         "and complete covariates")
    spec = data.spec
    reference = reference if reference is not None else build_model(data, priors)
    layout = parameter_layout(reference)
    # the kernel knows its blocks by name and takes exactly the group SDs on the log scale
    unknown = set(layout) - set(PARAMETERS)
    logged = {name for name, (_, _, _, is_log) in layout.items() if is_log}
    if unknown or logged != {name for name in layout if name.startswith("sigma")}:
        raise ValueError(f"the fused density does not cover parameters {sorted(unknown)} "
                         f"or log-scale parameters {sorted(logged)}")
    dims = reference.named_vars_to_dims
    arrays = model_inputs(data)
    constants = prior_table(data, priors)
    start = np.zeros(len(PARAMETERS), dtype=np.int64)
    size = np.zeros(len(PARAMETERS), dtype=np.int64)
    for j, name in enumerate(PARAMETERS):
        if name in layout:
            start[j], size[j] = layout[name][:2]
    with pm.Model(coords=reference.coords, check_bounds=False) as model:
        initial = fused_point(reference, reference.initial_point())
        theta = pm.Flat(FUSED_VECTOR, shape=initial.shape, initval=initial)
        params: dict[str, pt.TensorVariable] = {}
        for name, (first, length, shape, logged) in layout.items():
            block = theta[first:first + length].reshape(shape)
            params[name] = pm.Deterministic(name, pt.exp(block) if logged else block, dims=dims.get(name))
        used = _used_data(data)
        inputs = {name: pm.Data(name, arrays[name]) for name in DATA if name in used}
        for sd_var, _, _, effect, dim in GROUP_EFFECTS:
            if effect + "_z" in params:
                sigma, z = params[sd_var], params[effect + "_z"]
                scale = pt.switch(inputs[GROUP_INPUTS[effect][1]], sigma, 1.0)
                pm.Deterministic(effect, z * sigma / scale, dims=dim)
        if spec.has_irae:
            p_any, p_sev = loglik.irae_probabilities(pt, params["irae_a_any"], params["irae_b_severe"], 0.0)
            pm.Deterministic("irae_p_any_ref", p_any)
            pm.Deterministic("irae_p_grade3plus_ref", p_sev)
        args = [theta, pt.constant(start), pt.constant(size)]
        for name in DATA:
            if name in constants:
                args.append(pt.constant(constants[name]))
            elif name in inputs:
                args.append(inputs[name])
            else:
                args.append(pt.constant(_placeholder(name)))
        pm.Potential("joint_density", fused_density(*args)[0])
    return model


def _used_data(data: ModelData) -> set[str]:
    """Cohort arrays the kernel reads for this specification."""
    spec = data.spec
    used = {"events", "events_x_pfs2", "events_log_time", "log_time", "patient_pfs2_pattern",
            "pfs2_pattern_x_pfs2"}
    if "tumour_type" in spec.pfs2_groups:
        used |= {"tumour_centred", "pfs2_pattern_tumour_idx", "events_tumour"}
    if "centre" in spec.pfs2_groups:
        used |= {"centre_centred", "pfs2_pattern_centre_idx", "events_centre"}
    if spec.has_irae:
        used |= {"pattern_x_irae", "pattern_counts"}
        if "tumour_type" in spec.irae_groups:
            used |= {"tumour_irae_centred", "pattern_tumour_idx"}
        if "prior_irae_organ" in spec.irae_groups:
            used |= {"organ_centred", "pattern_organ_idx"}
    return used


def _placeholder(name: str) -> np.ndarray:
    """An empty stand-in for a data array of an absent part (never read by the kernel)."""
    if name in ("pfs2_pattern_tumour_idx", "pfs2_pattern_centre_idx", "pattern_tumour_idx", "pattern_organ_idx"):
        return np.zeros(0, dtype=np.int64)
    if name == "pattern_counts":
        return np.zeros((0, 3))
    if name == "pattern_x_irae":
        return np.zeros((0, 0))
    return np.zeros(0)
