"""Arithmetic of the fused kernel: its vectorisable exponential and its logarithm-free sum."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from rechallenge import fused_density
from rechallenge.fused_density import _times_power, vexp


@numba.njit(fastmath=False)
def _exp_into(x, out):
    """The kernel's loop shape: ``vexp`` inlined into a loop compiled without fast-math."""
    for i in range(x.shape[0]):
        out[i] = vexp(x[i])


def _exp_all(x):
    out = np.empty_like(x)
    _exp_into(x, out)
    return out


def test_exp_is_within_one_ulp_of_libm_over_the_whole_range():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-708, 709.78, 200_000), rng.uniform(-1, 1, 200_000),
                        rng.normal(0, 1e-9, 1000), np.arange(-708, 709, 0.5)])
    expected = np.array([math.exp(v) for v in x])
    ulps = np.abs(_exp_all(x) - expected) / np.spacing(expected)
    assert ulps.max() <= 1.0
    assert ulps.mean() < 0.2


def test_exp_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 709.78, 709.79, 1000.0, -708.0, -708.1, -1000.0])
    got = _exp_all(x)
    assert np.isnan(got[0])
    np.testing.assert_array_equal(got[1:5], [np.inf, 0.0, 1.0, 1.0])
    assert got[5] == pytest.approx(math.exp(709.78), rel=1e-15)
    np.testing.assert_array_equal(got[6:8], [np.inf, np.inf])
    assert got[8] == pytest.approx(math.exp(-708.0), rel=1e-15)
    np.testing.assert_array_equal(got[9:], [0.0, 0.0])   # below exp(-708): flushed to zero


@pytest.mark.parametrize("counts", ["small", "large", "fractional"])
def test_times_power_sums_count_times_log_base(counts):
    """log(product) + exponent2·log 2 + log_rest = Σ count·log(base), through renormalisation
    (3,000 factors up to 2^32 each) and the large-count and non-integer paths."""
    rng = np.random.default_rng(1)
    base = 1.0 + rng.uniform(0, 1, 3000)
    count = {"small": rng.integers(0, 33, 3000).astype(float),
             "large": rng.integers(0, 200, 3000).astype(float),
             "fractional": rng.uniform(0, 5, 3000)}[counts]
    product, exponent2, log_rest = 1.0, 0, 0.0
    for b, c in zip(base, count):
        product, exponent2, log_rest = _times_power(product, exponent2, log_rest, b, c)
        assert product < 2.0 ** 700
    total = math.log(product) + exponent2 * math.log(2.0) + log_rest
    expected = math.fsum(c * math.log(b) for b, c in zip(base, count))
    assert total == pytest.approx(expected, rel=1e-13)
    if counts == "small":
        assert exponent2 > 0 and log_rest == 0.0


def test_compiled_graph_cache_key_follows_the_kernel_source(tmp_path, monkeypatch):
    """PyTensor's on-disk cache of compiled graphs is keyed by the Op's props only; the
    kernel's source hash salts it so that an edited kernel is recompiled."""
    _, key = fused_density._numba_fused_density(fused_density.fused_density)
    assert key == fused_density.kernel_source_key()
    edited = tmp_path / "fused_density.py"
    edited.write_bytes(open(fused_density.__file__, "rb").read() + b"# edited\n")
    monkeypatch.setattr(fused_density, "__file__", str(edited))
    assert fused_density.kernel_source_key() != key
