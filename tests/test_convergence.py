"""The vectorised convergence diagnostics equal ArviZ's, parameter by parameter."""

from __future__ import annotations

import logging

import arviz as az
import numpy as np
import pytest

from rechallenge.convergence import convergence_summary


def _autoregressive(rng, phi, shape):
    x = rng.normal(size=shape)
    for t in range(1, shape[-1]):
        x[..., t] += phi * x[..., t - 1]
    return x


def _cases():
    rng = np.random.default_rng(0)
    return {
        "independent": rng.normal(size=(6, 4, 400)),
        "slow mixing": _autoregressive(rng, 0.97, (4, 4, 400)),
        "antithetic": _autoregressive(rng, -0.7, (3, 4, 400)),
        "chains disagree": rng.normal(size=(3, 4, 400)) + 0.4 * np.arange(4)[None, :, None],
        "ties": rng.integers(0, 3, size=(3, 4, 400)).astype(float),
        "a few ties": np.where(np.arange(400) % 37 == 0, 0.25, rng.normal(size=(3, 4, 400))),
        "odd length, 3 chains": rng.normal(size=(3, 3, 399)),
        "heavy tails": rng.standard_cauchy(size=(3, 4, 400)),
        "constant": np.full((2, 4, 400), 1.5),
        "one chain": rng.normal(size=(2, 1, 400)),
        "too short": rng.normal(size=(2, 4, 3)),
        "not finite": np.where(np.arange(400) == 7, np.nan, rng.normal(size=(2, 4, 400))),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_summary_equals_arviz_per_parameter(case, caplog):
    draws = _cases()[case]
    rhat, bulk, tail = convergence_summary(draws)
    with caplog.at_level(logging.ERROR, logger="arviz"), np.errstate(all="ignore"):
        expected = [np.array([az.rhat(x, method="rank") for x in draws]),
                    np.array([az.ess(x, method="bulk") for x in draws]),
                    np.array([az.ess(x, method="tail") for x in draws])]
    for got, want in zip((rhat, bulk, tail), expected):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-10)


def test_summary_flags_what_arviz_flags():
    """Not a tautology of the comparison above: disagreeing chains give R-hat well above
    1.01 and slow mixing a small ESS, while independent draws do neither."""
    cases = _cases()
    assert convergence_summary(cases["chains disagree"])[0].min() > 1.05
    assert convergence_summary(cases["independent"])[0].max() < 1.01
    assert convergence_summary(cases["slow mixing"])[1].max() < 200 < convergence_summary(cases["independent"])[1].min()
