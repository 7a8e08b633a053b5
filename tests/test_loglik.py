"""The likelihood formulas: closed forms, and NumPy and PyTensor agreeing exactly."""

from __future__ import annotations

import math

import numpy as np
import pytensor.tensor as pt
import pytest
from scipy import stats

from rechallenge import loglik

RNG = np.random.default_rng(7)
T = RNG.uniform(0.1, 30, 50)
D = RNG.integers(0, 2, 50).astype(float)
ETA = RNG.normal(0, 0.7, 50)
Y = RNG.integers(-1, 3, 50)


def both(fn, *args):
    """Evaluate fn with numpy and with pytensor (inputs as symbolic vectors)."""
    out_np = fn(np, *args)
    sym = [pt.as_tensor_variable(a) for a in args]
    out_pt = fn(pt, *sym)
    return np.asarray(out_np), np.asarray(out_pt.eval())


def test_weibull_matches_scipy():
    m, k = 6.0, 0.8
    log_h, cum_h = loglik.weibull_terms(np, T, math.log(m), math.log(k), 0.0)
    lam = m / math.log(2) ** (1 / k)
    ref = stats.weibull_min(k, scale=lam)
    assert np.allclose(np.exp(-cum_h), ref.sf(T))
    assert np.allclose(log_h, ref.logpdf(T) - ref.logsf(T))
    # the reference median is the median
    _, h_med = loglik.weibull_terms(np, np.array([m]), math.log(m), math.log(k), 0.0)
    assert np.exp(-h_med[0]) == pytest.approx(0.5)


def test_proportional_hazards():
    _, h0 = loglik.weibull_terms(np, T, 1.5, -0.2, 0.0)
    _, h1 = loglik.weibull_terms(np, T, 1.5, -0.2, math.log(2.0))
    assert np.allclose(h1, 2 * h0)


def test_piecewise_with_equal_hazards_is_exponential():
    exposure, interval = loglik.exposure_matrix(T, (3.0, 6.0, 12.0))
    assert np.allclose(exposure.sum(axis=1), T)
    log_h, cum_h = loglik.piecewise_terms(np, np.full(4, math.log(0.1)), exposure, interval, ETA)
    assert np.allclose(cum_h, 0.1 * T * np.exp(ETA))
    assert np.allclose(log_h, math.log(0.1) + ETA)
    assert interval[T < 3].max() == 0 and interval[T >= 12].min() == 3


def test_censored_loglik_is_log_survival_and_event_is_log_density():
    log_h, cum_h = loglik.weibull_terms(np, T, 1.0, 0.1, ETA)
    ll = loglik.survival_loglik(np, D, log_h, cum_h)
    assert np.allclose(ll[D == 0], -cum_h[D == 0])
    assert np.allclose(ll[D == 1], log_h[D == 1] - cum_h[D == 1])


def test_cure_model_limits():
    log_h, cum_h = loglik.weibull_terms(np, T, 1.0, 0.1, ETA)
    no_cure = loglik.survival_loglik(np, D, log_h, cum_h)
    tiny = loglik.survival_loglik(np, D, log_h, cum_h, logit_cure=-40.0)
    assert np.allclose(no_cure, tiny, atol=1e-9)
    s = loglik.survival_function(np, np.array([1e6]), logit_cure=math.log(0.3 / 0.7))
    assert s[0] == pytest.approx(0.3)


def test_irae_probabilities_sum_to_one_and_match_loglik():
    a, b = -0.8, -0.5
    zeta = np.linspace(-2, 2, 9)
    p_any, p_sev = loglik.irae_probabilities(np, a, b, zeta)
    probs = np.stack([1 - p_any, p_any - p_sev, p_sev])
    assert np.all(probs > 0) and np.allclose(probs.sum(axis=0), 1)
    for y in (0, 1, 2):
        ll = loglik.irae_loglik(np, np.full(9, y), a, b, zeta)
        assert np.allclose(np.exp(ll), probs[y])
    assert np.all(loglik.irae_loglik(np, np.full(9, -1), a, b, zeta) == 0)


@pytest.mark.parametrize("case", ["weibull", "piecewise", "cure", "irae"])
def test_numpy_and_pytensor_agree(case):
    if case == "weibull":
        a, b = both(lambda xp, t, e: loglik.survival_loglik(xp, D, *loglik.weibull_terms(xp, t, 1.2, -0.1, e)),
                    T, ETA)
    elif case == "piecewise":
        exposure, interval = loglik.exposure_matrix(T, (3.0, 6.0))
        hz = np.log([0.2, 0.1, 0.05])
        a, b = both(lambda xp, h, e: loglik.survival_loglik(
            xp, D, *loglik.piecewise_terms(xp, h, exposure, interval, e)), hz, ETA)
    elif case == "cure":
        a, b = both(lambda xp, t, e: loglik.survival_loglik(
            xp, D, *loglik.weibull_terms(xp, t, 1.2, -0.1, e), logit_cure=np.float64(-1.5)), T, ETA)
    else:
        a, b = both(lambda xp, y, z: loglik.irae_loglik(xp, y, -0.7, -0.4, z), Y, ETA)
        assert np.any(a != 0)
    assert np.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_onehot_irae_loglik_equals_the_coded_one():
    onehot = [(Y == k).astype(float) for k in (0, 1, 2)]
    coded = loglik.irae_loglik(np, Y, -0.7, -0.4, ETA)
    a, b = both(lambda xp, z: loglik.irae_loglik_onehot(xp, *onehot, -0.7, -0.4, z), ETA)
    assert np.allclose(a, coded, rtol=1e-12, atol=1e-12)
    assert np.allclose(b, coded, rtol=1e-12, atol=1e-12)
    assert np.all(coded[Y == -1] == 0)
