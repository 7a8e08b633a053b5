"""The model graph: fast exact rewrites agree with the row-wise likelihood."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rechallenge.cohort import validate_cohort
from rechallenge.mixture import NormalMixture, stack_mixtures
from rechallenge.model import build_model, model_inputs, uses_sufficient_statistics
from rechallenge.model_data import prepare_data
from rechallenge.modelspec import load_spec, spec_from_dict
from rechallenge.priors import literature_priors
from rechallenge.simulate import simulate_cohort


def test_stack_mixtures_pads_exactly():
    mixtures = [NormalMixture.normal(0.3, 0.2), NormalMixture([0.2, 0.5, 0.3], [0, 1, -1], [1, 0.5, 2]),
                NormalMixture([0.9, 0.1], [0.1, 0.0], [0.3, 2.0])]
    w, mu, sd = stack_mixtures(mixtures)
    assert w.shape == mu.shape == sd.shape == (3, 3)
    assert np.allclose(w.sum(axis=1), 1.0)
    x = np.linspace(-3, 3, 41)
    for row, m in enumerate(mixtures):
        dens = (w[row] * stats.norm.pdf(x[:, None], mu[row], sd[row])).sum(axis=1)
        assert np.allclose(dens, m.pdf(x), rtol=1e-12)


def _model(spec, n=400, seed=3, **sim):
    cohort = validate_cohort(simulate_cohort(n, seed=seed, **sim).data, required=sorted(spec.required_columns()))
    data = prepare_data(cohort, spec)
    return data, build_model(data, literature_priors())


@pytest.mark.parametrize("centre", [False, True])
def test_sufficient_statistic_and_pattern_forms_equal_the_rowwise_likelihood(centre):
    """The potential the sampler sees (sufficient statistics + aggregated irAE patterns)
    must equal the sum of the per-patient log-likelihoods at any parameter value."""
    spec = load_spec()
    if centre:
        d = spec.to_dict()
        d["pfs2"]["groups"] = ["tumour_type", "centre"]
        spec = spec_from_dict(d)
    data, model = _model(spec, n_centres=4 if centre else 0)
    assert uses_sufficient_statistics(data) and not data.expanded
    assert model_inputs(data)["pattern_counts"].shape[0] < data.n_patients  # really aggregated
    fn = model.compile_fn([model["loglik"], model["ll_pfs2"].sum() + model["ll_irae"].sum()],
                          inputs=model.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(0)
    point = model.initial_point()
    for _ in range(5):
        values = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in point.items()}
        fast, rowwise = fn(values)
        assert np.isfinite(fast)
        assert fast == pytest.approx(rowwise, rel=1e-10, abs=1e-8)


def test_irae_patterns_count_every_assessed_patient():
    spec = load_spec()
    data, _ = _model(spec)
    x, tumour, organ, counts = data.irae_patterns()
    assert counts.sum() == (data.y_irae >= 0).sum()
    assert np.array_equal(counts.sum(axis=0), np.bincount(data.y_irae[data.y_irae >= 0], minlength=3))
    assert len(np.unique(np.column_stack([x, tumour, organ]), axis=0)) == len(x)


def test_numpy_prior_draws_match_the_pymc_model_prior():
    """draw_prior (NumPy, used without PyMC by predict and SBC) and the PyMC model's own
    prior (pm.sample_prior_predictive) are two implementations of one distribution."""
    import pymc as pm

    from rechallenge.prior_draws import draw_prior

    spec = load_spec()
    data, model = _model(spec, n=300)
    with model:
        pymc_draws = pm.sample_prior_predictive(draws=4000, random_seed=1).prior
    ours = draw_prior(spec, literature_priors(), data.levels, draws=4000, seed=2)
    common = set(ours.data_vars) & set(pymc_draws.data_vars)
    assert {"log_hr", "log_or", "log_median", "log_shape", "tumour_effect", "organ_effect",
            "sigma_tumour", "irae_a_any", "irae_b_severe", "irae_p_any_ref"} <= common
    for var in sorted(common):
        assert ours[var].dims == pymc_draws[var].dims, var
        a = ours[var].values.reshape(4000, -1)
        b = pymc_draws[var].values.reshape(4000, -1)
        for j in range(a.shape[1]):
            assert stats.ks_2samp(a[:, j], b[:, j]).pvalue > 1e-3, (var, j)
