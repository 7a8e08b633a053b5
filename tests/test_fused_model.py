"""The fused sampling model equals the reference PyMC model: value, gradient, parameters."""

from __future__ import annotations

import numpy as np
import pytest

from rechallenge.cohort import validate_cohort
from rechallenge.fused_density import FusedDensity
from rechallenge.fused_model import FUSED_VECTOR, build_fused_model, can_fuse, fused_point
from rechallenge.model import build_model, model_inputs
from rechallenge.model_data import prepare_data
from rechallenge.modelspec import load_spec
from rechallenge.priors import literature_priors, vague_priors
from rechallenge.simulate import simulate_cohort

SPECS = {
    "default": ({}, {}),
    "centre_groups": ({"pfs2_groups": ["tumour_type", "centre"]}, {"n_centres": 4}),
    "centred_and_noncentred": ({"centred_min_patients": 30}, {}),
    "pfs2_only": ({"irae": None}, {}),
    "no_groups": ({"pfs2_groups": [], "irae_groups": []}, {}),
    "organ_only": ({"irae_groups": ["prior_irae_organ"], "pfs2_groups": []}, {}),
    "extra_columns": ({"extra": {"age": "continuous", "smoker": "binary"}}, {}),
    # irAE patterns with > 32 patients and > 2^600 in the running product (_times_power)
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


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("prior_name", ["literature", "vague"])
def test_fused_density_and_gradient_equal_the_reference_model(name, prior_name):
    data = _data(name)
    priors = literature_priors() if prior_name == "literature" else vague_priors()
    assert can_fuse(data)
    if name == "large_cohort":
        assert model_inputs(data)["pattern_counts"].sum(axis=1).max() > 32
    reference = build_model(data, priors)
    fused = build_fused_model(data, priors, reference=reference)
    assert [v.name for v in fused.value_vars] == [FUSED_VECTOR]
    np.testing.assert_allclose(fused.initial_point()[FUSED_VECTOR],
                               fused_point(reference, reference.initial_point()), rtol=1e-12)
    parameters = [rv.name for rv in reference.free_RVs]
    assert {d.name for d in fused.deterministics} == \
        set(parameters) | {d.name for d in reference.deterministics} - {"ll_pfs2", "ll_irae"}
    assert {name: fused.named_vars_to_dims.get(name) for name in parameters} == \
        {name: reference.named_vars_to_dims.get(name) for name in parameters}
    logp_ref, logp_fused = reference.compile_logp(), fused.compile_logp()
    grad_ref, grad_fused = reference.compile_dlogp(), fused.compile_dlogp()
    as_parameters = fused.compile_fn(fused.replace_rvs_by_values([fused[name] for name in parameters]),
                                     inputs=fused.value_vars)
    rng = np.random.default_rng(1)
    start = reference.initial_point()
    for scale in (0.1, 0.5, 1.0):
        point = {k: v + rng.normal(0, scale, np.shape(v)) for k, v in start.items()}
        theta = {FUSED_VECTOR: fused_point(reference, point)}
        value = logp_ref(point)
        assert np.isfinite(value)
        assert logp_fused(theta) == pytest.approx(value, rel=1e-11, abs=1e-7)
        g_ref, g_fused = grad_ref(point), grad_fused(theta)
        np.testing.assert_allclose(g_fused, g_ref, rtol=1e-9, atol=1e-9 * np.abs(g_ref).max())
        # each parameter, read back from the vector, is the reference's constrained value
        for rv, fused_value in zip(reference.free_RVs, as_parameters(theta)):
            unconstrained = point[reference.rvs_to_values[rv].name]
            expected = np.exp(unconstrained) if reference.rvs_to_transforms.get(rv) else unconstrained
            np.testing.assert_allclose(fused_value, expected, rtol=1e-14)


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
    from rechallenge.fit import fit

    first, other = simulate_cohort(300, seed=41).data, simulate_cohort(300, seed=42).data
    kwargs = dict(draws=200, tune=200, chains=2, seed=3, progressbar=False, log_likelihood=False)
    a = fit(first, **kwargs)
    fit(other, **kwargs)
    b = fit(first, **kwargs)
    for var in ("log_hr", "log_or", "sigma_tumour", "tumour_effect"):
        np.testing.assert_array_equal(a.posterior[var].values, b.posterior[var].values)
