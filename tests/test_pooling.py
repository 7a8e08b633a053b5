"""Tests of rechallenge.pooling against closed forms, metafor's published BCG fit and an
independent brute-force 2-D integration of the joint posterior."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from rechallenge.mixture import NormalMixture
from rechallenge.pooling import (MetaAnalysis, effective_sample_size, random_effects,
                                 robust_mixture)

Z975 = 1.959964

# metafor dat.bcg (Colditz et al. 1994): tpos, tneg, cpos, cneg
BCG = {
    "Aronson 1948": (4, 119, 11, 128),
    "Ferguson & Simes 1949": (6, 300, 29, 274),
    "Rosenthal 1960": (3, 228, 11, 209),
    "Hart & Sutherland 1977": (62, 13536, 248, 12619),
    "Frimodt-Moller 1973": (33, 5036, 47, 5761),
    "Stein & Aronson 1953": (180, 1361, 372, 1079),
    "Vandiviere 1973": (8, 2537, 10, 619),
    "TPT Madras 1980": (505, 87886, 499, 87892),
    "Coetzee & Berjak 1968": (29, 7470, 45, 7232),
    "Rosenthal 1961": (17, 1699, 65, 1600),
    "Comstock 1974": (186, 50448, 141, 27197),
    "Comstock & Webster 1969": (5, 2493, 3, 2338),
    "Comstock 1976": (27, 16886, 29, 17825),
}


@pytest.fixture(scope="module")
def bcg() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Log risk ratios and their variances (metafor escalc(measure = "RR"))."""
    tpos, tneg, cpos, cneg = np.array(list(BCG.values()), dtype=float).T
    yi = np.log((tpos / (tpos + tneg)) / (cpos / (cpos + cneg)))
    vi = 1 / tpos - 1 / (tpos + tneg) + 1 / cpos - 1 / (cpos + cneg)
    return list(BCG), yi, vi


@pytest.fixture(scope="module")
def bcg_bayes(bcg) -> MetaAnalysis:
    labels, yi, vi = bcg
    return random_effects(yi, np.sqrt(vi), labels=labels, tau_prior_scale=0.5,
                          mu_prior_mean=0.0, mu_prior_sd=4.0)


def test_bcg_effect_sizes_match_metafor(bcg):
    labels, yi, vi = bcg
    aronson, madras = labels.index("Aronson 1948"), labels.index("TPT Madras 1980")
    assert yi[aronson] == pytest.approx(-0.8893, abs=5e-5)
    assert vi[aronson] == pytest.approx(0.3256, abs=5e-5)
    assert yi[madras] == pytest.approx(0.0120, abs=5e-5)
    assert vi[madras] == pytest.approx(0.0040, abs=5e-5)


def test_known_tau_matches_closed_form():
    y, se, tau = np.array([0.2, 0.5, -0.1]), np.array([0.1, 0.2, 0.15]), 0.3
    w = 1 / (se**2 + tau**2)
    mean, var = np.sum(w * y) / np.sum(w), 1 / np.sum(w)
    ma = random_effects(y, se, tau_fixed=tau, mu_prior_sd=1e6)
    assert ma.mu.n_components == 1 and ma.predictive.n_components == 1
    assert ma.mu.mean == pytest.approx(mean, abs=1e-9)
    assert ma.mu.var == pytest.approx(var, rel=1e-9)
    assert ma.predictive.mean == pytest.approx(mean, abs=1e-9)
    assert ma.predictive.var == pytest.approx(var + tau**2, rel=1e-9)
    assert ma.tau_prior_scale is None and ma.tau_fixed == tau
    assert ma.tau_median == tau
    # shrinkage estimates: B_i mu + (1 - B_i) y_i, B_i = se_i^2 / (se_i^2 + tau^2)
    b = se**2 / (se**2 + tau**2)
    np.testing.assert_allclose(ma.shrunken, b * mean + (1 - b) * y, atol=1e-9)


def test_known_tau_with_informative_mu_prior_is_conjugate():
    y, se, tau, m0, s0 = np.array([0.2, 0.5]), np.array([0.1, 0.2]), 0.1, -0.3, 0.25
    prec = 1 / s0**2 + np.sum(1 / (se**2 + tau**2))
    mean = (m0 / s0**2 + np.sum(y / (se**2 + tau**2))) / prec
    ma = random_effects(y, se, tau_fixed=tau, mu_prior_mean=m0, mu_prior_sd=s0)
    assert ma.mu.mean == pytest.approx(mean, abs=1e-12)
    assert ma.mu.sd == pytest.approx(prec**-0.5, rel=1e-12)


def test_tau_zero_is_the_common_effect_inverse_variance_mean(bcg):
    _, yi, vi = bcg
    ma = random_effects(yi, np.sqrt(vi), tau_fixed=0.0, mu_prior_sd=1e6)
    assert ma.mu.mean == pytest.approx(np.sum(yi / vi) / np.sum(1 / vi), abs=1e-9)
    assert ma.predictive.sd == pytest.approx(np.sum(1 / vi) ** -0.5, rel=1e-9)


def test_bcg_reml_tau_reproduces_metafor(bcg):
    # metafor rma(yi, vi, data = dat.bcg): tau^2 = 0.3132, -0.7145 (se 0.1798),
    # 95% CI -1.0669 to -0.3622 (Viechtbauer 2010, J Stat Softw 36(3))
    labels, yi, vi = bcg
    ma = random_effects(yi, np.sqrt(vi), labels=labels, tau_fixed=np.sqrt(0.3132),
                        mu_prior_sd=1e6)
    assert ma.mu.mean == pytest.approx(-0.7145, abs=0.001)
    assert ma.mu.sd == pytest.approx(0.1798, abs=0.0005)
    lo, hi = ma.mu.interval(0.95)
    assert lo == pytest.approx(-1.0669, abs=0.002)
    assert hi == pytest.approx(-0.3622, abs=0.002)
    pi_half = Z975 * np.sqrt(0.1798**2 + 0.3132)
    plo, phi = ma.predictive.interval(0.95)
    assert plo == pytest.approx(-0.7145 - pi_half, abs=0.005)
    assert phi == pytest.approx(-0.7145 + pi_half, abs=0.005)
    assert ma.labels == tuple(labels) and ma.n_studies == 13


def _brute_force_posterior(yi, se, tau_scale=0.5, m0=0.0, s0=4.0):
    """Joint posterior of (mu, tau) on a dense 2-D grid, integrated by Simpson's rule.

    Written independently of the package: the likelihood is the product of
    N(y_i; mu, se_i^2 + tau^2) (theta_i integrated out), priors N(m0, s0^2) and
    HalfNormal(tau_scale).
    """
    mu = np.linspace(-2.8, 1.4, 841)
    tau = np.linspace(0.0, 3.0, 901)
    T, MU = np.meshgrid(tau, mu, indexing="ij")
    v = se**2 + T[..., None] ** 2
    log_post = (-0.5 * np.sum(np.log(v) + (yi - MU[..., None]) ** 2 / v, axis=-1)
                - 0.5 * ((MU - m0) / s0) ** 2 - 0.5 * (T / tau_scale) ** 2)
    p = np.exp(log_post - log_post.max())

    def expect(f):
        return integrate.simpson(integrate.simpson(p * f, x=mu, axis=1), x=tau)

    z = expect(1.0)
    e_mu = expect(MU) / z
    var_mu = expect((MU - e_mu) ** 2) / z
    e_tau2 = expect(T**2) / z
    p_tau = integrate.simpson(p, x=mu, axis=1)
    cdf = integrate.cumulative_simpson(p_tau, x=tau, initial=0.0)
    tau_q = np.interp([0.5, 0.025, 0.975], cdf / cdf[-1], tau)
    shrink = se**2 / v
    theta = np.array([expect(shrink[..., i] * MU + (1 - shrink[..., i]) * yi[i]) / z
                      for i in range(yi.size)])
    return dict(mu_mean=e_mu, mu_sd=np.sqrt(var_mu), tau_q=tau_q,
                pred_sd=np.sqrt(var_mu + e_tau2), theta=theta)


def test_bcg_fully_bayesian_matches_brute_force_integration(bcg, bcg_bayes):
    _, yi, vi = bcg
    ref = _brute_force_posterior(yi, np.sqrt(vi))
    ma = bcg_bayes
    assert ma.mu.mean == pytest.approx(ref["mu_mean"], rel=1e-3, abs=1e-4)
    assert ma.mu.sd == pytest.approx(ref["mu_sd"], rel=1e-3)
    assert ma.tau_median == pytest.approx(ref["tau_q"][0], rel=1e-3)
    assert ma.tau_interval == pytest.approx(tuple(ref["tau_q"][1:]), rel=2e-3)
    assert ma.predictive.mean == pytest.approx(ref["mu_mean"], rel=1e-3, abs=1e-4)
    assert ma.predictive.sd == pytest.approx(ref["pred_sd"], rel=1e-3)
    np.testing.assert_allclose(ma.shrunken, ref["theta"], rtol=1e-3, atol=1e-4)
    # sanity of the reference itself: the tau posterior sits well inside its grid
    assert 0.3 < ref["tau_q"][0] < 0.8


@pytest.mark.parametrize("y", [[0.3] * 6, [-1.0, 0.0, 1.0]])
def test_tau_quantiles_match_a_multivariate_normal_reference(y):
    """p(tau | y) from scipy's multivariate normal density of y | tau, i.e.
    N(m0 1, diag(se^2 + tau^2) + s0^2 11'), not from the package's closed form; a grid
    tau = 3 t^2 resolves posteriors piled up near zero; Simpson's rule in t."""
    y, m0, s0, scale = np.array(y), 0.0, 4.0, 0.5
    se = np.full(y.size, 0.05 if y.size == 6 else 0.1)
    t = np.linspace(0.0, 1.0, 3001)
    tau = 3.0 * t**2
    cov0 = s0**2 * np.ones((y.size, y.size))
    logf = np.array([stats.multivariate_normal.logpdf(y, np.full(y.size, m0),
                                                      np.diag(se**2 + u**2) + cov0) for u in tau])
    dens = np.exp(logf - 0.5 * (tau / scale) ** 2 - logf.max()) * 6.0 * t
    cdf = integrate.cumulative_simpson(dens, x=t, initial=0.0)
    expected = np.interp([0.5, 0.025, 0.975], cdf / cdf[-1], tau)
    ma = random_effects(y, se, tau_prior_scale=scale, mu_prior_mean=m0, mu_prior_sd=s0)
    np.testing.assert_allclose([ma.tau_median, *ma.tau_interval], expected, rtol=5e-4)


def test_bcg_posterior_summaries_are_coherent(bcg_bayes):
    ma = bcg_bayes
    assert ma.mu.n_components <= 3 and ma.predictive.n_components <= 3
    assert ma.tau_interval[0] < ma.tau_median < ma.tau_interval[1]
    assert ma.predictive.sd > ma.mu.sd
    lo, hi = ma.predictive.interval()
    assert lo < ma.mu.interval()[0] and hi > ma.mu.interval()[1]


def test_shift_equivariance(bcg):
    _, yi, vi = bcg
    a = random_effects(yi, np.sqrt(vi), mu_prior_mean=0.0)
    b = random_effects(yi + 1.5, np.sqrt(vi), mu_prior_mean=1.5)
    assert b.mu.mean == pytest.approx(a.mu.mean + 1.5, abs=1e-9)
    assert b.predictive.sd == pytest.approx(a.predictive.sd, rel=1e-9)
    assert b.tau_median == pytest.approx(a.tau_median, rel=1e-9)
    np.testing.assert_allclose(b.shrunken, a.shrunken + 1.5, atol=1e-9)


@pytest.mark.parametrize("kwargs", [{}, {"mu_prior_sd": 0.5, "tau_prior_scale": 2.0}])
def test_one_study_is_that_study(kwargs):
    ma = random_effects([-0.4], [0.25], labels=["only"], **kwargs)
    for dist in (ma.mu, ma.predictive):
        assert dist.n_components == 1
        assert dist.mean == pytest.approx(-0.4, abs=1e-15)
        assert dist.sd == pytest.approx(0.25, abs=1e-15)
    assert ma.n_studies == 1 and ma.tau_median is None and ma.tau_interval is None
    np.testing.assert_array_equal(ma.shrunken, [-0.4])


def test_disagreeing_studies_widen_the_predictive():
    ma = random_effects([-1.0, 0.0, 1.0], [0.1, 0.1, 0.1])
    assert ma.predictive.sd > 2 * ma.mu.sd
    assert ma.tau_median > 0.5
    # studies shrink towards the mean but keep their order
    assert np.all(np.diff(ma.shrunken) > 0)
    assert abs(ma.shrunken[0]) < 1.0


def test_identical_studies_give_small_tau():
    prior_median = 0.5 * stats.halfnorm.ppf(0.5)
    ma = random_effects([0.3] * 6, [0.05] * 6, tau_prior_scale=0.5)
    assert ma.tau_median < prior_median / 3
    assert ma.mu.mean == pytest.approx(0.3, abs=0.005)
    assert ma.predictive.sd < 0.2


def test_robust_mixture_moments():
    prior, w = NormalMixture.normal(-0.5, 0.2), 0.2
    rob = robust_mixture(prior, w, vague_mean=0.0, vague_sd=2.0)
    mean = (1 - w) * -0.5 + w * 0.0
    var = (1 - w) * (0.2**2 + 0.25) + w * (4.0 + 0.0) - mean**2
    assert rob.n_components == 2
    assert rob.mean == pytest.approx(mean, rel=1e-12)
    assert rob.var == pytest.approx(var, rel=1e-12)
    assert robust_mixture(prior, 0.0) is prior


@pytest.mark.parametrize("weight", [1.0, -0.1, 1.5, float("nan")])
def test_robust_mixture_rejects_bad_weight(weight):
    with pytest.raises(ValueError):
        robust_mixture(NormalMixture.normal(0, 1), weight)


def test_robust_mixture_rejects_bad_vague_sd():
    with pytest.raises(ValueError):
        robust_mixture(NormalMixture.normal(0, 1), 0.2, vague_sd=0.0)


def test_ess_moment_method():
    prior = NormalMixture.normal(0.0, 0.5)
    assert effective_sample_size(prior, unit_sd=2.0) == pytest.approx(16.0)
    # logit of p = 0.3: unit sd 1/sqrt(p(1-p)); a N(., 0.2^2) prior is worth ~119 patients
    unit = 1 / np.sqrt(0.3 * 0.7)
    assert effective_sample_size(NormalMixture.normal(-0.85, 0.2), unit_sd=unit) == \
        pytest.approx(1 / (0.21 * 0.04))


@pytest.mark.parametrize("mean, sd, unit", [(0.0, 0.5, 2.0), (-1.2, 0.05, 1.0), (3.0, 4.0, 2.0)])
def test_ess_elir_equals_moment_for_a_normal(mean, sd, unit):
    prior = NormalMixture.normal(mean, sd)
    elir = effective_sample_size(prior, unit_sd=unit, method="elir")
    assert elir == pytest.approx(effective_sample_size(prior, unit_sd=unit), rel=1e-3)
    assert elir == pytest.approx(unit**2 / sd**2, rel=1e-3)


def test_ess_elir_of_a_mixture_is_the_expected_squared_score():
    # E_p[-(log p)''] = E_p[((log p)')^2] (integration by parts): check by finite differences
    prior = NormalMixture([0.7, 0.3], [0.1, -0.4], [0.2, 1.0])
    x = np.linspace(-10, 10, 200_001)
    score = np.gradient(prior.logpdf(x), x[1] - x[0])
    expected = integrate.trapezoid(prior.pdf(x) * score**2, x)
    elir = effective_sample_size(prior, unit_sd=2.0, method="elir")
    assert elir == pytest.approx(4.0 * expected, rel=1e-4)


@pytest.mark.parametrize("method", ["moment", "elir"])
def test_robustification_lowers_the_ess(method):
    informative = NormalMixture.normal(-0.3, 0.15)
    rob = robust_mixture(informative, 0.2, vague_sd=2.0)
    ess_inf = effective_sample_size(informative, unit_sd=2.0, method=method)
    ess_rob = effective_sample_size(rob, unit_sd=2.0, method=method)
    assert 0 < ess_rob < ess_inf


def test_ess_rejects_bad_arguments():
    prior = NormalMixture.normal(0.0, 1.0)
    with pytest.raises(ValueError):
        effective_sample_size(prior, unit_sd=0.0)
    with pytest.raises(ValueError):
        effective_sample_size(prior, unit_sd=2.0, method="morita")


@pytest.mark.parametrize("y, se, kwargs, match", [
    ([0.1, 0.2], [0.1], {}, "length"),
    ([0.1, 0.2], [0.1, 0.0], {}, "se"),
    ([0.1, 0.2], [0.1, -0.2], {}, "se"),
    ([0.1, float("nan")], [0.1, 0.2], {}, "y"),
    ([0.1, 0.2], [0.1, float("nan")], {}, "se"),
    ([0.1, float("inf")], [0.1, 0.2], {}, "y"),
    ([], [], {}, "y"),
    ([0.1, 0.2], [0.1, 0.2], {"tau_prior_scale": 0.0}, "tau_prior_scale"),
    ([0.1, 0.2], [0.1, 0.2], {"tau_prior_scale": -1.0}, "tau_prior_scale"),
    ([0.1, 0.2], [0.1, 0.2], {"tau_fixed": -0.1}, "tau_fixed"),
    ([0.1, 0.2], [0.1, 0.2], {"mu_prior_sd": 0.0}, "mu_prior_sd"),
    ([0.1, 0.2], [0.1, 0.2], {"mu_prior_mean": float("nan")}, "mu_prior_mean"),
    ([0.1, 0.2], [0.1, 0.2], {"labels": ["a"]}, "labels"),
])
def test_bad_input_raises(y, se, kwargs, match):
    with pytest.raises(ValueError, match=match):
        random_effects(y, se, **kwargs)
