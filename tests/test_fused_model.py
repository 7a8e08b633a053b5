"""The fused sampling model equals the reference PyMC model: value, gradient, parameters."""

from __future__ import annotations

import numpy as np
import pytest

from rechallenge.cohort import validate_cohort
from rechallenge.fused_density import FusedDensity
from rechallenge.fused_model import (FUSED_VECTOR, build_fused_model, can_fuse, fused_point, parameter_layout,
                                     reference_draws, sampling_inputs)
from rechallenge.model import build_model, model_inputs
from rechallenge.model_data import prepare_data
from rechallenge.modelspec import load_spec
from rechallenge.priors import literature_priors, vague_priors
from rechallenge.simulate import TUMOUR_TYPES, simulate_cohort

SPECS = {
    "default": ({}, {}),
    "centre_groups": ({"pfs2_groups": ["tumour_type", "centre"]}, {"n_centres": 4}),
    "centred_and_noncentred": ({"centred_min_patients": 30}, {}),
    "pfs2_only": ({"irae": None}, {}),
    "no_groups": ({"pfs2_groups": [], "irae_groups": []}, {}),
    "organ_only": ({"irae_groups": ["prior_irae_organ"], "pfs2_groups": []}, {}),
    "extra_columns": ({"extra": {"age": "continuous", "smoker": "binary"}}, {}),
    # 4,000 patients: irAE patterns with many patients each, long lane sums
    "large_cohort": ({}, {"n": 4000}),
}


def _data(name, n=250, seed=5):
    changes, sim = SPECS[name]
    sim = dict(sim)
    n = sim.pop("n", n)
    spec = load_spec().replace(**changes)
    frame = simulate_cohort(n, seed=seed, **sim).data
    if "extra" in changes:
        rng = np.random.default_rng(seed)
        frame = frame.assign(age=rng.normal(60, 10, len(frame)).round(), smoker=rng.integers(0, 2, len(frame)))
    cohort = validate_cohort(frame, required=sorted(spec.required_columns()), extra=spec.extra_types)
    return prepare_data(cohort, spec)


def _central_differences(f, x, h=1e-6):
    """Rows: ∂f/∂x_i by central differences (f returns a vector or a scalar)."""
    return np.array([(np.atleast_1d(f(x + e)) - np.atleast_1d(f(x - e))) / (2 * h) for e in np.eye(len(x)) * h])


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("prior_name", ["literature", "vague"])
def test_fused_density_equals_the_reference_model_after_reparameterisation(name, prior_name):
    """The fused model samples the reference posterior in another parameterisation.

    At random points: its parameters, read back from the vector, are the reference's
    (round trip of :func:`fused_point`); its log density is the reference's plus the
    log-Jacobian of the change of variables (computed here by finite differences, not by
    the package) minus log 2 per folded group SD; flipping the sign of a group's ``s`` and
    deviates changes nothing; the gradient equals finite differences of the value.
    """
    data = _data(name)
    priors = literature_priors() if prior_name == "literature" else vague_priors()
    assert can_fuse(data)
    if name == "large_cohort":
        assert model_inputs(data)["pattern_counts"].sum(axis=1).max() > 32
    reference = build_model(data, priors)
    fused = build_fused_model(data, priors, reference=reference)
    assert [v.name for v in fused.value_vars] == [FUSED_VECTOR]
    parameters = [rv.name for rv in reference.free_RVs]
    assert {d.name for d in fused.deterministics} == \
        set(parameters) | {d.name for d in reference.deterministics} - {"ll_pfs2", "ll_irae"}
    assert {name: fused.named_vars_to_dims.get(name) for name in parameters} == \
        {name: reference.named_vars_to_dims.get(name) for name in parameters}
    logp_ref, logp_fused = reference.compile_logp(), fused.compile_logp()
    grad_fused = fused.compile_dlogp()
    read_back = fused.compile_fn(fused.replace_rvs_by_values([fused[name] for name in parameters]),
                                 inputs=fused.value_vars)
    logged = [reference.rvs_to_transforms.get(rv) is not None for rv in reference.free_RVs]

    def reference_vector(theta):
        """The reference model's unconstrained values at a fused vector (σ → log σ)."""
        values = read_back({FUSED_VECTOR: theta})
        return np.concatenate([np.ravel(np.log(v) if is_log else v) for v, is_log in zip(values, logged)])

    layout = {rv.name: reference.rvs_to_values[rv].name for rv in reference.free_RVs}
    folded = [name for name in layout if name.startswith("sigma")]
    deterministics = {d.name: fused.compile_fn(fused.replace_rvs_by_values([d])[0], inputs=fused.value_vars)
                      for d in fused.deterministics}

    def flip_signs(theta):
        """The other sign of every folded SD with its deviates: the same point of the model."""
        flipped = theta.copy()
        position = 0
        for rv in reference.free_RVs:
            size = int(np.prod(np.shape(start[layout[rv.name]]), dtype=int))
            if rv.name in folded or rv.name.endswith("_z"):
                flipped[position:position + size] *= -1
            position += size
        return flipped

    # the start does not depend on the cohort (refits of a compiled model keep it), and it
    # is the reference's initial point where the cohort plays no part (I_g = 0, no shifts)
    start_vector = fused.initial_point()[FUSED_VECTOR]
    no_cohort = {key: np.zeros_like(value) for key, value in sampling_inputs(data).items()}
    np.testing.assert_allclose(start_vector, fused_point(reference, reference.initial_point(), data, no_cohort),
                               rtol=1e-12, atol=1e-12)
    rng = np.random.default_rng(1)
    start = reference.initial_point()
    for scale in (0.1, 0.5, 1.0):
        point = {k: v + rng.normal(0, scale, np.shape(v)) for k, v in start.items()}
        theta = fused_point(reference, point, data)
        expected = np.concatenate([np.ravel(point[layout[name]]) for name in parameters])
        np.testing.assert_allclose(reference_vector(theta), expected, rtol=1e-10, atol=1e-12)
        # the NumPy deterministics that fit() applies after sampling equal the graph's
        numpy_values = reference_draws(np.stack([theta, flip_signs(theta)]), parameter_layout(reference),
                                       sampling_inputs(data), data.spec.has_irae)
        assert list(numpy_values) == [d.name for d in fused.deterministics]
        for deterministic in fused.deterministics:
            for row, vector in enumerate((theta, flip_signs(theta))):
                np.testing.assert_allclose(numpy_values[deterministic.name][row], deterministics[deterministic.name](
                    {FUSED_VECTOR: vector}), rtol=1e-12, atol=1e-12)
        log_jacobian = np.linalg.slogdet(_central_differences(reference_vector, theta))[1]
        value = logp_fused({FUSED_VECTOR: theta})
        assert np.isfinite(value)
        assert value == pytest.approx(logp_ref(point) + log_jacobian - len(folded) * np.log(2), abs=1e-6)
        # the other sign of every folded SD (with its deviates) is the same point of the model
        flipped = flip_signs(theta)
        assert logp_fused({FUSED_VECTOR: flipped}) == pytest.approx(value, rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(reference_vector(flipped), reference_vector(theta), rtol=1e-12, atol=1e-12)
        gradient = grad_fused({FUSED_VECTOR: theta})
        numeric = _central_differences(lambda x: logp_fused({FUSED_VECTOR: x}), theta).ravel()
        np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(gradient).max()))


def test_numba_kernel_equals_the_python_path():
    """What nutpie compiles (Numba mode) gives the same value and gradient, also under
    PyTensor's default fast-math flags (the kernel must not inherit them: they broke its
    vectorised exponential, 14 nats off at this point before ``joint_density`` declared
    ``fastmath=False``)."""
    data = _data("default")
    fused = build_fused_model(data, literature_priors())
    point = fused.initial_point()
    py = fused.compile_fn([fused.logp(), fused.dlogp()], mode="FAST_COMPILE")
    nb = fused.compile_fn([fused.logp(), fused.dlogp()], mode="NUMBA")
    assert any(isinstance(node.op, FusedDensity) for node in nb.f.maker.fgraph.apply_nodes)
    np.testing.assert_allclose(np.concatenate([np.ravel(v) for v in nb(point)]),
                               np.concatenate([np.ravel(v) for v in py(point)]), rtol=1e-12, atol=1e-12)


def test_fused_model_is_only_used_where_it_applies():
    assert can_fuse(_data("default"))
    assert not can_fuse(_data("default"), prior_only=True)
    spec = load_spec()
    frame = simulate_cohort(200, seed=2, missing={"nlr": 0.2}).data
    cohort = validate_cohort(frame, required=sorted(spec.required_columns()))
    data = prepare_data(cohort, spec)
    assert not can_fuse(data)
    with pytest.raises(ValueError, match="fused density"):
        build_fused_model(data, literature_priors())
    piecewise = load_spec().replace(baseline="piecewise_exponential")
    cohort = validate_cohort(simulate_cohort(200, seed=2).data, required=sorted(piecewise.required_columns()))
    assert not can_fuse(prepare_data(cohort, piecewise))


def test_fused_fits_are_reproducible_across_compiled_model_reuse():
    """Same seed, same numbers through the fused model: a refit of the cached compiled
    model (after another cohort was swapped in) repeats the first fit exactly. The two
    chains run in parallel threads, where fast-math reassociation made the kernel's sums
    thread-dependent (this failed in about 2 of 3 runs before ``fit`` switched it off)."""
    from rechallenge import fit as fit_module
    from rechallenge.fit import TARGET_ACCEPT_FUSED, fit

    first, other = simulate_cohort(300, seed=41).data, simulate_cohort(300, seed=42).data
    kwargs = dict(draws=200, tune=200, chains=2, seed=3, progressbar=False, log_likelihood=False,
                  group_levels={"tumour_type": TUMOUR_TYPES})
    fit_module._COMPILED.clear()
    a = fit(first, **kwargs)
    refit_other = fit(other, **kwargs)
    assert len(fit_module._COMPILED) == 1  # one model structure: `other` was a refit
    b = fit(first, **kwargs)
    assert a.attrs["target_accept"] == TARGET_ACCEPT_FUSED  # the fused path's own default
    # whichever cohort was compiled first: a refit of `other` equals a fresh compile on it
    fit_module._COMPILED.clear()
    compiled_other = fit(other, **kwargs)
    for var in ("log_hr", "log_or", "sigma_tumour", "tumour_effect"):
        np.testing.assert_array_equal(a.posterior[var].values, b.posterior[var].values)
        np.testing.assert_array_equal(refit_other.posterior[var].values, compiled_other.posterior[var].values)
