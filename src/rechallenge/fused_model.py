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
from .fused_density import DATA, PARAMETERS, PRIOR_INPUTS, fused_density, pack_cohort_arrays
from .mixture import NormalMixture
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
    scales of the four group SDs (1 where a group is absent).

    Each row lists its components by decreasing weight and is padded to the longest
    mixture with components of weight 0 (``prior_log_norm = −∞``), which the kernel
    skips: a single normal then costs no exponential or logarithm.
    """
    spec = data.spec
    rows = list(coefficient_priors(spec, priors, "pfs2"))
    rows += [_entry_mixture(priors, ("pfs2", "baseline_median")), _entry_mixture(priors, ("pfs2", "weibull_shape"))]
    if spec.has_irae:
        rows += list(coefficient_priors(spec, priors, "irae"))
        rows += [_entry_mixture(priors, ("irae", "baseline_any")), severe_given_any_prior(priors)]
    width = max(m.n_components for m in rows)
    mean = np.zeros((len(rows), width))
    precision = np.ones((len(rows), width))
    log_norm = np.full((len(rows), width), -np.inf)
    for r, mixture in enumerate(rows):
        order = np.argsort(-np.asarray(mixture.weights), kind="stable")
        weights, means, sds = (np.asarray(v, dtype=float)[order] for v in
                               (mixture.weights, mixture.means, mixture.sds))
        n = len(order)
        mean[r, :n] = means
        precision[r, :n] = 1.0 / sds ** 2
        with np.errstate(divide="ignore"):
            log_norm[r, :n] = np.log(weights) - np.log(sds) - 0.5 * np.log(2.0 * np.pi)
    used = {"pfs2": spec.pfs2_groups, "irae": spec.irae_groups}
    scales = [priors[(outcome, key)].halfnormal_scale if dim in used[outcome] else 1.0
              for _, outcome, key, _, dim in GROUP_EFFECTS]
    return {"prior_mean": mean, "prior_precision": precision, "prior_log_norm": log_norm,
            "group_sd_scale": np.asarray(scales, dtype=float)}


#: Name of the fused model's single free variable: all parameters, unconstrained, joined.
FUSED_VECTOR = "fused_parameters"

#: Arrays of the sampling parameterisation (see :mod:`rechallenge.fused_density`), per
#: group effect: the information ``I_g`` about each level's effect and the weight of each
#: level in the centred intercept.
FUSED_GROUP_INPUTS = {"tumour_effect": ("tumour_information", "tumour_weight"),
                      "centre_effect": ("centre_information", "centre_weight"),
                      "tumour_effect_irae": ("tumour_irae_information", "tumour_irae_weight"),
                      "organ_effect": ("organ_information", "organ_weight")}


def patterns_by_level(level: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """The patterns of each level of a group: ``(patterns, offsets)`` such that
    ``patterns[offsets[g]:offsets[g + 1]]`` are the patterns p with ``level[p] == g``
    (in increasing order), so the kernel sums over a level without scattering."""
    level = np.asarray(level, dtype=np.int64)
    patterns = np.argsort(level, kind="stable").astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(level, minlength=n_levels))]).astype(np.int64)
    return patterns, offsets


def sampling_inputs(data: ModelData) -> dict[str, np.ndarray]:
    r"""Every data array of the sampled model: :func:`rechallenge.model.model_inputs`
    plus, in the fast form, the constants of the fused sampling parameterisation.

    PFS2 (weights over events, :math:`D = \sum_i d_i`): :math:`\bar x = \sum_i d_i x_i / D`,
    level weights :math:`D_g/D` and information :math:`I_g = D_g` (the Fisher
    information about a log-hazard shift of level g is its number of events). irAE
    (weights over assessed patients, :math:`N`): :math:`\bar x = \sum_p N_p x_p / N`,
    level weights :math:`N_g/N`, and
    :math:`I_g = \sum_{p∈g} N_p q_1(1 − q_1) + M_p q_2(1 − q_2)` with :math:`M_p` the
    patients of pattern p with any irAE and :math:`q_1, q_2` the cohort's smoothed
    any-grade and grade ≥3-given-any proportions (the binomial information of the two
    logit stages). These only precondition the sampler: the posterior does not depend
    on them.
    """
    out = model_inputs(data)
    if not uses_sufficient_statistics(data):
        return out
    n_levels = {dim: len(levels) for dim, levels in data.levels.items()}
    # The kernel's layouts (fused_density.joint_density): covariates by row, counts by
    # outcome, and each group's patterns listed level by level.
    out["pfs2_pattern_x_by_covariate"] = np.ascontiguousarray(out["pfs2_pattern_x_pfs2"].T)
    for prefix, index, dim in (("pfs2_tumour", "pfs2_pattern_tumour_idx", "tumour_type"),
                               ("pfs2_centre", "pfs2_pattern_centre_idx", "centre"),
                               ("irae_tumour", "pattern_tumour_idx", "tumour_type"),
                               ("organ", "pattern_organ_idx", "prior_irae_organ")):
        if index in out and dim in n_levels:
            out[prefix + "_patterns"], out[prefix + "_offsets"] = patterns_by_level(out[index], n_levels[dim])
    if "pattern_counts" in out:
        out["pattern_counts_by_outcome"] = np.ascontiguousarray(out["pattern_counts"].T)
        out["pattern_x_irae_by_covariate"] = np.ascontiguousarray(out["pattern_x_irae"].T)
    events = max(float(out["events"]), 1.0)
    out["pfs2_mean_x"] = out["events_x_pfs2"] / events
    for effect, counts in (("tumour_effect", out["events_tumour"]), ("centre_effect", out["events_centre"])):
        information, weight = FUSED_GROUP_INPUTS[effect]
        out[information] = np.asarray(counts, dtype=float)
        out[weight] = np.asarray(counts, dtype=float) / events
    if data.spec.has_irae and "pattern_counts" in out:
        x, counts = out["pattern_x_irae"], out["pattern_counts"]
        patients, reached = counts.sum(axis=1), counts[:, 1] + counts[:, 2]
        total = counts.sum(axis=0)
        q_any = (total[1] + total[2] + 0.5) / (total.sum() + 1.0)
        q_severe = (total[2] + 0.5) / (total[1] + total[2] + 1.0)
        information = patients * q_any * (1 - q_any) + reached * q_severe * (1 - q_severe)
        assessed = max(float(patients.sum()), 1.0)
        out["irae_mean_x"] = patients @ x / assessed
        for effect, idx, dim in (("tumour_effect_irae", out["pattern_tumour_idx"], "tumour_type"),
                                 ("organ_effect", out["pattern_organ_idx"], "prior_irae_organ")):
            info_name, weight_name = FUSED_GROUP_INPUTS[effect]
            out[info_name] = np.bincount(idx, weights=information, minlength=n_levels[dim])
            out[weight_name] = np.bincount(idx, weights=patients, minlength=n_levels[dim]) / assessed
    # What the kernel reads, in two arrays (fused_density.pack_cohort_arrays).
    out["kernel_reals"], out["kernel_integers"] = pack_cohort_arrays(
        {name: out[name] if name in out else _placeholder(name) for name in DATA if name not in PRIOR_INPUTS})
    return out


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


def _present_groups(layout) -> list[tuple[str, str, str]]:
    """``(sd name, effect name, outcome)`` of the group effects the model has."""
    return [(sd, effect, outcome) for sd, outcome, _, effect, _ in GROUP_EFFECTS if effect + "_z" in layout]


def reference_draws(theta: np.ndarray, layout, arrays: dict[str, np.ndarray],
                    has_irae: bool) -> dict[str, np.ndarray]:
    """The fused model's deterministics for draws of its vector, in NumPy.

    ``theta`` has shape (..., n) (e.g. chain, draw, n). Returns, by name and in the fused
    model's order, the reference model's parameters on its scale (σ = |s|, the reference's
    ``z``, ``log m``, ``a``, ``b``), the group effects u and, with an irAE part, the
    reference irAE probabilities: what :func:`build_fused_model`'s PyTensor deterministics
    compute (tested equal), here once for all draws after sampling instead of by nutpie at
    every draw (~30 ms of a 300-patient refit's 0.29 s of sampling, 2026-11-22).
    ``arrays``: :func:`sampling_inputs` of the cohort.
    """
    theta = np.asarray(theta, dtype=float)
    lead = theta.shape[:-1]
    raw = {name: theta[..., first:first + length].reshape(*lead, *shape)
           for name, (first, length, shape, _) in layout.items()}
    params, effects = {}, {}
    shift = {"pfs2": raw["log_hr"] @ arrays["pfs2_mean_x"],
             "irae": raw["log_or"] @ arrays["irae_mean_x"] if has_irae else 0.0}
    for sd, effect, outcome in _present_groups(layout):
        information, weight = (arrays[name] for name in FUSED_GROUP_INPUTS[effect])
        s, z = raw[sd][..., None], raw[effect + "_z"]
        c = np.sqrt(1.0 + s ** 2 * information)
        effects[effect] = s * z / c
        params[sd] = np.abs(raw[sd])
        params[effect + "_z"] = np.where(arrays[GROUP_INPUTS[effect][1]] != 0, effects[effect], np.sign(s) * z / c)
        shift[outcome] = shift[outcome] + effects[effect] @ weight
    params["log_median"] = raw["log_median"] + shift["pfs2"] / np.exp(raw["log_shape"])
    for name in ("irae_a_any", "irae_b_severe"):
        if name in raw:
            params[name] = raw[name] - shift["irae"]
    out = {name: params.get(name, raw[name]) for name in layout}
    out.update({effect: effects[effect] for _, _, _, effect, _ in GROUP_EFFECTS if effect in effects})
    if has_irae:
        out["irae_p_any_ref"], out["irae_p_grade3plus_ref"] = loglik.irae_probabilities(
            np, params["irae_a_any"], params["irae_b_severe"], 0.0)
    return out


def posterior_builder(fused: pm.Model, layout, has_irae: bool):
    """A function ``(posterior with the fused vector, sampling inputs) → posterior`` that
    replaces the vector's draws by the fused model's deterministics (:func:`reference_draws`)
    under their own names, dims and coordinates, for :func:`rechallenge.fit.fit`."""
    import pandas as pd
    import xarray as xr

    dims = {}
    for deterministic in fused.deterministics:
        named = fused.named_vars_to_dims.get(deterministic.name) or ()
        ndim = deterministic.ndim
        dims[deterministic.name] = tuple(named) if len(named) == ndim else tuple(
            f"{deterministic.name}_dim_{i}" for i in range(ndim))
    coords = {dim: pd.Index(fused.coords[dim]) for names in dims.values() for dim in names if dim in fused.coords}

    def build(posterior: xr.Dataset, arrays: dict[str, np.ndarray]) -> xr.Dataset:
        values = reference_draws(posterior[FUSED_VECTOR].values, layout, arrays, has_irae)
        return xr.Dataset({name: (("chain", "draw", *dims[name]), value) for name, value in values.items()},
                          coords={"chain": posterior["chain"].values, "draw": posterior["draw"].values, **coords},
                          attrs=posterior.attrs)

    return build


def cohort_free_start(reference: pm.Model) -> np.ndarray:
    """The fused vector's starting values: the reference's initial point (group deviates
    0, σ from log σ) with the cohort-dependent parts of the sampling parameterisation left
    out (no intercept shifts; I_g = 0).

    nutpie keeps the initial values of the cohort a model was compiled with, and refits
    swap only the data. A start that depended on the cohort (:func:`fused_point` of the
    reference's initial point) made a refit's numbers depend on which cohort a process
    had compiled first (measured: posterior mean of log_hr 0.5391 against 0.5459 for the
    same cohort and seed). This start is the same for every cohort of a model structure.
    """
    point = reference.initial_point()
    parts = []
    for rv in reference.free_RVs:
        value = np.asarray(point[reference.rvs_to_values[rv].name], dtype=float)
        parts.append(np.ravel(np.exp(value) if reference.rvs_to_transforms.get(rv) is not None else value))
    return np.concatenate(parts)


def fused_point(reference: pm.Model, point: dict[str, np.ndarray], data: ModelData,
                arrays: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """A point of the reference model (its value variables: σ as log σ) as the fused
    vector, in the sampling parameterisation of :mod:`rechallenge.fused_density`:
    ``s = σ``, ``z' = u c / σ``, ``log m' = log m − shift/k``, ``a' = a + shift``,
    ``b' = b + shift`` (the inverse of the fused model's deterministics).
    ``arrays``: :func:`sampling_inputs` of ``data``, if already computed."""
    arrays = arrays if arrays is not None else sampling_inputs(data)
    values = {rv.name: np.asarray(point[reference.rvs_to_values[rv].name], dtype=float)
              for rv in reference.free_RVs}
    out = dict(values)
    shift = {"pfs2": float(arrays["pfs2_mean_x"] @ values["log_hr"]),
             "irae": float(arrays["irae_mean_x"] @ values["log_or"]) if "log_or" in values else 0.0}
    for sd, effect, outcome in _present_groups(values):
        information, weight = (arrays[name] for name in FUSED_GROUP_INPUTS[effect])
        sigma, z = np.exp(values[sd]), values[effect + "_z"]
        u = np.where(arrays[GROUP_INPUTS[effect][1]] != 0, z, sigma * z)
        out[sd] = sigma
        out[effect + "_z"] = u * np.sqrt(1.0 + sigma ** 2 * information) / sigma
        shift[outcome] += float(weight @ u)
    out["log_median"] = values["log_median"] - shift["pfs2"] / np.exp(values["log_shape"])
    for name in ("irae_a_any", "irae_b_severe"):
        if name in values:
            out[name] = values[name] + shift["irae"]
    return np.concatenate([np.ravel(out[rv.name]) for rv in reference.free_RVs])


def build_fused_model(data: ModelData, priors: PriorSet, reference: pm.Model | None = None) -> pm.Model:
    """The fused twin of ``build_model(data, priors)`` (see module docstring).

    Its one free variable, :data:`FUSED_VECTOR`, joins the model's parameters in the
    reference's order, in the sampling parameterisation of
    :mod:`rechallenge.fused_density` (folded group SDs, information-scaled deviates,
    centred intercepts), starting at :func:`cohort_free_start`; each reference
    parameter is a deterministic of it under its own name and dims, on the reference's
    scale (σ, the reference's ``z``, ``log m``, ``a``, ``b``).

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
    arrays = sampling_inputs(data)
    constants = prior_table(data, priors)
    start = np.zeros(len(PARAMETERS), dtype=np.int64)
    size = np.zeros(len(PARAMETERS), dtype=np.int64)
    for j, name in enumerate(PARAMETERS):
        if name in layout:
            start[j], size[j] = layout[name][:2]
    with pm.Model(coords=reference.coords, check_bounds=False) as model:
        initial = cohort_free_start(reference)
        theta = pm.Flat(FUSED_VECTOR, shape=initial.shape, initval=initial)
        raw = {name: theta[first:first + length].reshape(shape)
               for name, (first, length, shape, _) in layout.items()}
        inputs = {name: pm.Data(name, arrays[name]) for name in _deterministic_inputs(data)}
        params: dict[str, pt.TensorVariable] = {}
        effects: dict[str, pt.TensorVariable] = {}
        shift = {"pfs2": pt.dot(inputs["pfs2_mean_x"], raw["log_hr"]), "irae": 0.0}
        if spec.has_irae:
            shift["irae"] = pt.dot(inputs["irae_mean_x"], raw["log_or"])
        for sd, effect, outcome in _present_groups(layout):
            information, weight = (inputs[name] for name in FUSED_GROUP_INPUTS[effect])
            s, z = raw[sd], raw[effect + "_z"]
            c = pt.sqrt(1.0 + s ** 2 * information)
            effects[effect] = s * z / c
            params[sd] = pt.abs(s)
            params[effect + "_z"] = pt.switch(inputs[GROUP_INPUTS[effect][1]], effects[effect], pt.sign(s) * z / c)
            shift[outcome] = shift[outcome] + pt.dot(weight, effects[effect])
        params["log_median"] = raw["log_median"] + shift["pfs2"] / pt.exp(raw["log_shape"])
        for name in ("irae_a_any", "irae_b_severe"):
            if name in raw:
                params[name] = raw[name] - shift["irae"]
        for name in layout:
            pm.Deterministic(name, params.get(name, raw[name]), dims=dims.get(name))
        for _, _, _, effect, dim in GROUP_EFFECTS:
            if effect in effects:
                pm.Deterministic(effect, effects[effect], dims=dim)
        if spec.has_irae:
            p_any, p_sev = loglik.irae_probabilities(pt, params["irae_a_any"], params["irae_b_severe"], 0.0)
            pm.Deterministic("irae_p_any_ref", p_any)
            pm.Deterministic("irae_p_grade3plus_ref", p_sev)
        args = [theta, pt.constant(start), pt.constant(size),
                *(pt.constant(constants[name]) for name in PRIOR_INPUTS),
                pm.Data("kernel_reals", arrays["kernel_reals"]),
                pm.Data("kernel_integers", arrays["kernel_integers"])]
        pm.Potential("joint_density", fused_density(*args)[0])
    return model



def _deterministic_inputs(data: ModelData) -> list[str]:
    """Data arrays that the fused model's deterministics read (the kernel reads the packed
    ``kernel_reals`` and ``kernel_integers``): the intercept shifts' weights and each
    present group's information and centred-form flag."""
    spec = data.spec
    names = ["pfs2_mean_x"] + (["irae_mean_x"] if spec.has_irae else [])
    groups = {"tumour_effect": "tumour_type" in spec.pfs2_groups,
              "centre_effect": "centre" in spec.pfs2_groups,
              "tumour_effect_irae": spec.has_irae and "tumour_type" in spec.irae_groups,
              "organ_effect": spec.has_irae and "prior_irae_organ" in spec.irae_groups}
    for effect, present in groups.items():
        if present:
            names += [*FUSED_GROUP_INPUTS[effect], GROUP_INPUTS[effect][1]]
    return names


def _placeholder(name: str) -> np.ndarray:
    """An empty stand-in for a data array of an absent part (never read by the kernel)."""
    if name.endswith(("_idx", "_patterns")):
        return np.zeros(0, dtype=np.int64)
    if name.endswith("_offsets"):
        return np.zeros(1, dtype=np.int64)
    if name == "pattern_counts_by_outcome":
        return np.zeros((3, 0))
    if name == "pattern_x_irae_by_covariate":
        return np.zeros((0, 0))
    return np.zeros(0)
