"""Tests of rechallenge.mixture: moments, distribution functions, sampling, compression."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import stats

from rechallenge.mixture import NormalMixture, mix

W, M, S = [0.3, 0.7], [-1.0, 2.0], [0.5, 1.5]


@pytest.fixture
def two() -> NormalMixture:
    return NormalMixture(W, M, S)


def _scipy_cdf(x, w, m, s):
    return sum(wk * stats.norm.cdf(x, mk, sk) for wk, mk, sk in zip(w, m, s))


def test_moments_match_closed_form(two):
    mean = sum(w * m for w, m in zip(W, M))
    var = sum(w * (s**2 + m**2) for w, m, s in zip(W, M, S)) - mean**2
    assert two.n_components == 2
    assert two.mean == pytest.approx(mean, rel=1e-12)
    assert two.var == pytest.approx(var, rel=1e-12)
    assert two.sd == pytest.approx(np.sqrt(var), rel=1e-12)


def test_pdf_cdf_logpdf_match_scipy(two):
    x = np.linspace(-6, 9, 60)
    pdf = sum(w * stats.norm.pdf(x, m, s) for w, m, s in zip(W, M, S))
    np.testing.assert_allclose(two.pdf(x), pdf, rtol=1e-12)
    np.testing.assert_allclose(two.cdf(x), _scipy_cdf(x, W, M, S), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(two.logpdf(x), np.log(pdf), rtol=1e-12)
    assert two.pdf(x.reshape(3, -1)).shape == (3, 20)
    assert np.ndim(two.cdf(0.3)) == 0


def test_logpdf_is_stable_where_pdf_underflows():
    one = NormalMixture.normal(0.0, 1.0)
    assert one.pdf(-60.0) == 0.0
    assert one.logpdf(-60.0) == pytest.approx(stats.norm.logpdf(-60.0), rel=1e-12)
    two = NormalMixture([0.5, 0.5], [0.0, 1.0], [1.0, 1.0])
    # far left the first component dominates: log(0.5 phi(x)) + log1p(exp(x - 1/2))
    x = -80.0
    expected = np.log(0.5) + stats.norm.logpdf(x) + np.log1p(np.exp(x - 0.5))
    assert two.logpdf(x) == pytest.approx(expected, rel=1e-12)


def test_ppf_inverts_cdf(two):
    x = np.linspace(-3, 6, 37)
    np.testing.assert_allclose(two.ppf(two.cdf(x)), x, atol=1e-9)
    q = np.array([1e-6, 0.01, 0.3, 0.5, 0.99, 1 - 1e-6])
    np.testing.assert_allclose(_scipy_cdf(two.ppf(q), W, M, S), q, rtol=1e-9)
    assert two.ppf(0.0) == -np.inf and two.ppf(1.0) == np.inf
    assert two.ppf([[0.2, 0.4]]).shape == (1, 2)


def test_interval_and_median_of_single_normal():
    one = NormalMixture.normal(0.4, 0.25)
    lo, hi = one.interval()
    assert lo == pytest.approx(0.4 - 1.959964 * 0.25, abs=1e-6)
    assert hi == pytest.approx(0.4 + 1.959964 * 0.25, abs=1e-6)
    assert one.median == pytest.approx(0.4, abs=1e-12)
    lo80, hi80 = one.interval(0.8)
    assert hi80 - lo80 == pytest.approx(2 * 1.2815516 * 0.25, abs=1e-6)


def test_median_of_symmetric_mixture():
    sym = NormalMixture([0.25, 0.5, 0.25], [-2.0, 1.0, 4.0], [1.0, 0.3, 1.0])
    assert sym.median == pytest.approx(1.0, abs=1e-9)


def test_sampling_moments_within_monte_carlo_error(two):
    n = 200_000
    draws = two.sample(n, np.random.default_rng(20240611))
    assert draws.shape == (n,)
    assert abs(draws.mean() - two.mean) < 4 * two.sd / np.sqrt(n)
    assert draws.std() == pytest.approx(two.sd, rel=0.01)
    # the component frequencies are right too
    assert np.mean(draws < 0.5) == pytest.approx(float(two.cdf(0.5)), abs=0.005)
    again = two.sample(5, np.random.default_rng(1))
    np.testing.assert_array_equal(again, two.sample(5, np.random.default_rng(1)))


def test_dict_round_trip(two):
    d = two.to_dict()
    assert set(d) == {"weights", "means", "sds"}
    assert all(type(v) is float for values in d.values() for v in values)
    back = NormalMixture.from_dict(json.loads(json.dumps(d)))
    for field in ("weights", "means", "sds"):
        np.testing.assert_array_equal(getattr(back, field), getattr(two, field))


def test_weights_are_renormalised_and_arrays_frozen():
    m = NormalMixture([0.5, 0.5 + 5e-9], [0, 1], [1, 1])
    assert m.weights.sum() == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError):
        m.means[0] = 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.means = np.array([1.0, 2.0])  # type: ignore[misc]
    source = np.array([1.0])
    NormalMixture(source, [0.0], [1.0])
    source[0] = 1.0  # the caller's array stays writable


def test_compress_single_normal_gives_one_component():
    one = NormalMixture.normal(-0.3, 0.7).compress()
    assert one.n_components == 1
    assert one.means[0] == pytest.approx(-0.3) and one.sds[0] == pytest.approx(0.7)
    # a two-component mixture of identical normals is one normal
    same = NormalMixture([0.4, 0.6], [1.0, 1.0], [0.5, 0.5]).compress()
    assert same.n_components == 1
    assert same.mean == pytest.approx(1.0, abs=1e-6) and same.sd == pytest.approx(0.5, rel=1e-4)


def test_compress_keeps_two_modes():
    # two well separated clusters of two near-identical components each
    w, m, s = [0.2, 0.2, 0.3, 0.3], [-3.0, -2.9, 2.0, 2.05], [0.5, 0.5, 0.4, 0.42]
    orig = NormalMixture(w, m, s)
    small = orig.compress(max_components=3)
    assert small.n_components == 2
    x = np.linspace(-8, 8, 4001)
    assert np.max(np.abs(small.cdf(x) - _scipy_cdf(x, w, m, s))) < 0.005
    assert small.mean == pytest.approx(orig.mean, abs=1e-4)
    assert small.sd == pytest.approx(orig.sd, rel=1e-4)
    order = np.argsort(small.means)
    np.testing.assert_allclose(small.means[order], [-2.95, 2.025], atol=0.01)
    np.testing.assert_allclose(small.weights[order], [0.4, 0.6], atol=0.005)


def test_compress_adds_a_third_component_when_two_are_not_enough():
    # the right cluster is skewed: two normals leave a CDF error of about 0.007
    w, m, s = [0.5, 0.25, 0.25], [-3.0, 2.0, 2.3], [0.5, 0.4, 0.5]
    x = np.linspace(-8, 8, 4001)
    two_only = NormalMixture(w, m, s).compress(max_components=2, tol=1e-6)
    assert two_only.n_components == 2
    assert np.max(np.abs(two_only.cdf(x) - _scipy_cdf(x, w, m, s))) > 0.005
    skewed = NormalMixture([0.5, 0.3, 0.2], [2.0, 2.35, 2.9], [0.4, 0.5, 0.6])
    small = mix([(0.5, NormalMixture.normal(-3.0, 0.5)), (0.5, skewed)]).compress(3)
    assert small.n_components == 3
    truth = 0.5 * stats.norm.cdf(x, -3.0, 0.5) + 0.5 * skewed.cdf(x)
    assert np.max(np.abs(small.cdf(x) - truth)) < 0.005


def test_compress_of_many_components_is_small_and_close():
    rng = np.random.default_rng(3)
    k = 400
    orig = NormalMixture(np.full(k, 1 / k), rng.normal(0.0, 0.3, k), rng.uniform(0.1, 0.6, k))
    small = orig.compress(max_components=3)
    assert small.n_components <= 3
    x = np.linspace(-3, 3, 3001)
    assert np.max(np.abs(small.cdf(x) - orig.cdf(x))) < 0.005
    assert small.mean == pytest.approx(orig.mean, abs=1e-4)
    assert small.sd == pytest.approx(orig.sd, rel=1e-3)
    assert orig.compress(max_components=1).n_components == 1


def test_mix_of_mixtures():
    a = NormalMixture([0.5, 0.5], [0.0, 1.0], [1.0, 2.0])
    b = NormalMixture.normal(3.0, 0.5)
    both = mix([(1.0, a), (3.0, b)])
    np.testing.assert_allclose(both.weights, [0.125, 0.125, 0.75])
    assert both.mean == pytest.approx(0.25 * a.mean + 0.75 * b.mean)
    x = np.linspace(-4, 6, 11)
    np.testing.assert_allclose(both.pdf(x), 0.25 * a.pdf(x) + 0.75 * b.pdf(x), rtol=1e-12)
    with pytest.raises(ValueError):
        mix([(-1.0, a), (2.0, b)])
    with pytest.raises(ValueError):
        mix([])


@pytest.mark.parametrize("weights, means, sds", [
    ([0.5, 0.5], [0.0], [1.0, 1.0]),            # lengths differ
    ([], [], []),                                # empty
    ([-0.1, 1.1], [0.0, 1.0], [1.0, 1.0]),      # negative weight
    ([0.5, 0.4], [0.0, 1.0], [1.0, 1.0]),       # weights do not sum to one
    ([1.0], [0.0], [0.0]),                       # sd zero
    ([1.0], [0.0], [-1.0]),                      # sd negative
    ([1.0], [float("nan")], [1.0]),              # NaN mean
    ([1.0], [0.0], [float("inf")]),              # infinite sd
    ([[1.0]], [[0.0]], [[1.0]]),                 # not 1-D
    (["a"], [0.0], [1.0]),                       # not numbers
])
def test_invalid_parameters_raise(weights, means, sds):
    with pytest.raises(ValueError):
        NormalMixture(weights, means, sds)


def test_invalid_arguments_raise(two):
    with pytest.raises(ValueError, match="sds"):
        NormalMixture.from_dict({"weights": [1.0], "means": [0.0]})
    with pytest.raises(ValueError):
        two.ppf(1.5)
    with pytest.raises(ValueError):
        two.ppf(float("nan"))
    with pytest.raises(ValueError):
        two.interval(1.0)
    with pytest.raises(ValueError):
        two.sample(-1, np.random.default_rng(0))
    with pytest.raises(ValueError):
        two.compress(max_components=0)
