"""Tests of simulation-based calibration (rechallenge.studies.sbc and .ranks).

The machinery is checked where the answer is known: uniform ranks pass and skewed ranks
fail the uniformity tests at their nominal rates; SBC of a conjugate normal model with
exact posterior draws passes, with an over-confident or shifted "posterior" it fails.
The NumPy joint log-likelihood (SBC's data-dependent test quantity) equals the PyMC
model's. On the real model, SBC flags data simulated with the wrong Weibull shape
(fast), and passes for the default model with 200 replicates (slow).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rechallenge.studies import SBCConfig, SerialExecutor, run_sbc, run_toy_sbc
from rechallenge.studies.ranks import chi2_uniformity, ecdf_band, ecdf_uniformity, holm, rank_of, thin_indices

TINY_SPEC = {"name": "tiny_sbc", "pfs2": {"baseline": "weibull", "covariates": ["tfi_le6", "nlr"], "groups": []},
             "irae": None}


# --------------------------------------------------------------------------- rank statistics


def test_uniformity_tests_hold_their_size_and_detect_skew():
    rng = np.random.default_rng(0)
    L, N = 49, 150
    p_ecdf = np.array([ecdf_uniformity(rng.integers(0, L + 1, N), L) for _ in range(300)])
    p_chi2 = np.array([chi2_uniformity(rng.integers(0, L + 1, N), L)[1] for _ in range(300)])
    for p in (p_ecdf, p_chi2):
        assert abs(np.mean(p < 0.05) - 0.05) < 0.04      # size (binomial sd 0.013)
        assert stats.kstest(p, "uniform").pvalue > 0.001  # p-values uniform under the null
    # ranks of a posterior that is too narrow pile up at both ends
    theta = rng.standard_normal(N)
    draws = 0.6 * rng.standard_normal((N, L))
    r = np.array([rank_of(t, d, rng) for t, d in zip(theta, draws)])
    assert ecdf_uniformity(r, L) < 1e-3 and chi2_uniformity(r, L)[1] < 1e-3


def test_holm_and_helpers():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, np.nan]), [0.03, 0.06, 0.06, np.nan])
    assert list(thin_indices(10, 5)) == [0, 2, 4, 6, 8]
    rng = np.random.default_rng(1)
    assert rank_of(0.5, np.array([0.1, 0.2, 0.9]), rng) == 2
    assert rank_of(0.2, np.array([0.2, 0.2, 0.9]), rng) in (0, 1, 2)
    z, lo, hi = ecdf_band(100, 19, 0.05)
    assert z.shape == lo.shape == hi.shape == (19,) and np.all(lo < 0) and np.all(hi > 0)


# --------------------------------------------------------------------------- conjugate toy


def test_toy_sbc_passes_with_exact_posterior_and_fails_when_wrong(tmp_path):
    good = run_toy_sbc(tmp_path / "good", replicates=400, L=49, executor=SerialExecutor())
    assert good.passed, good.summary
    assert set(good.summary["quantity"]) == {"theta", "loglik"}
    narrow = run_toy_sbc(tmp_path / "narrow", replicates=400, L=49, sd_factor=0.7, executor=SerialExecutor())
    shifted = run_toy_sbc(tmp_path / "shift", replicates=400, L=49, shift=0.4, executor=SerialExecutor())
    assert not narrow.passed and not shifted.passed
    assert narrow.summary.set_index("quantity").loc["theta", "ecdf_p_holm"] < 1e-3
    # a shift of the posterior mean is seen by theta's rank; the log-likelihood sees it too
    assert shifted.summary.set_index("quantity").loc["theta", "ecdf_p_holm"] < 1e-3


def test_toy_sbc_through_process_pool_matches_serial(tmp_path):
    serial = run_toy_sbc(tmp_path / "a", replicates=40, L=19, executor=SerialExecutor())
    pooled = run_toy_sbc(tmp_path / "b", replicates=40, L=19, workers=2, plots=True)
    np.testing.assert_array_equal(serial.ranks["rank"].values, pooled.ranks["rank"].values)
    assert (tmp_path / "b" / "ranks.nc").exists() and (tmp_path / "b" / "plots" / "sbc_ecdf.png").exists()


# --------------------------------------------------------------------------- the model's likelihood


def test_joint_loglik_equals_the_pymc_model():
    import pymc as pm

    from rechallenge.cohort import validate_cohort
    from rechallenge.model import build_model, model_inputs
    from rechallenge.model_data import prepare_data
    from rechallenge.modelspec import load_spec
    from rechallenge.prior_draws import draw_prior
    from rechallenge.priors import literature_priors
    from rechallenge.simulate import simulate_cohort
    from rechallenge.studies.sbc import _params, joint_loglik, sbc_covariates

    spec, priors = load_spec("literature"), literature_priors()
    data = simulate_cohort(150, seed=3, covariates=sbc_covariates()).data
    md = prepare_data(validate_cohort(data, required=sorted(spec.required_columns())), spec)
    model = build_model(md, priors)
    draws = draw_prior(spec, priors, md.levels, draws=20, seed=4)
    inputs = model_inputs(md)
    # the model's free variables: non-centred group effects are z = effect / sigma
    for effect, sigma, flag in (("tumour_effect", "sigma_tumour", "tumour_centred"),
                                ("tumour_effect_irae", "sigma_tumour_irae", "tumour_irae_centred"),
                                ("organ_effect", "sigma_organ", "organ_centred")):
        centred = inputs[flag].astype(bool)
        draws[f"{effect}_z"] = draws[effect] / np.where(centred, 1.0, draws[sigma].values[..., None])
    ll = pm.compute_deterministics(draws, var_names=["ll_pfs2", "ll_irae"], model=model, progressbar=False)
    expected = (ll["ll_pfs2"] + ll["ll_irae"]).sum("patient").values.ravel()
    np.testing.assert_allclose(joint_loglik(md, _params(draws, md)), expected, rtol=1e-9)


# --------------------------------------------------------------------------- the real model


def test_sbc_flags_data_simulated_with_the_wrong_shape(tmp_path):
    cfg = SBCConfig(n=100, replicates=30, seed=5, spec=TINY_SPEC, draws=200, tune=200, chains=2, thin_to=39,
                    shape_multiplier=2.0)
    result = run_sbc(cfg, tmp_path, executor=SerialExecutor(), progress=False, plots=False)
    table = result.summary.set_index("quantity")
    assert result.n_failed == 0
    assert not result.passed
    assert table.loc["log_shape", "flagged"] and table.loc["log_shape", "ecdf_p_holm"] < 1e-3
    assert set(table.index) == {"log_hr[tfi_le6]", "log_hr[nlr]", "log_median", "log_shape", "loglik"}


def test_sbc_passes_for_a_correct_small_model(tmp_path):
    cfg = SBCConfig(n=100, replicates=60, seed=6, spec=TINY_SPEC, draws=200, tune=200, chains=2, thin_to=39)
    result = run_sbc(cfg, tmp_path, executor=SerialExecutor(), progress=False, plots=False)
    assert result.n_failed == 0
    assert result.passed, result.summary


@pytest.mark.slow
def test_sbc_default_model_200_replicates(tmp_path):
    """SBC of the default joint model (PFS2 + irAE, literature priors), 200 replicates of
    200 patients, two worker processes; every quantity's Holm-adjusted ECDF p >= 0.01."""
    cfg = SBCConfig(n=200, replicates=200, seed=1, draws=250, tune=500, chains=4, thin_to=99)
    result = run_sbc(cfg, tmp_path, workers=2, progress=False)
    print(result.summary.to_string())
    print(f"failed {result.n_failed}, unreliable {result.n_unreliable}")
    assert result.n_failed <= 2
    assert result.passed, result.summary


@pytest.mark.slow
def test_sbc_flags_a_fit_prior_that_differs_from_the_generating_prior(tmp_path):
    """Fit with the baseline-median prior shifted by +1 on the log scale (the data are
    generated from the literature prior): SBC must flag log_median."""
    from rechallenge.mixture import NormalMixture
    from rechallenge.priors import literature_priors

    priors = literature_priors()
    old = priors[("pfs2", "baseline_median")].distribution
    shifted = priors.override("pfs2", "baseline_median",
                              distribution=NormalMixture(old.weights, old.means + 1.0, old.sds))
    cfg = SBCConfig(n=200, replicates=100, seed=2, priors=priors, fit_priors=shifted, draws=250, tune=500,
                    chains=4, thin_to=99)
    result = run_sbc(cfg, tmp_path, workers=2, progress=False, plots=False)
    print(result.summary.to_string())
    table = result.summary.set_index("quantity")
    assert not result.passed
    assert table.loc["log_median", "flagged"]
