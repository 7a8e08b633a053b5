"""Arithmetic of the fused kernel: its vectorisable exponential and logarithm, its lane sums."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from rechallenge import fused_density
from rechallenge.fused_density import _lane_dot, _lane_gather_sum, _lane_sum, vexp, vlog1p_unit


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


@numba.njit(fastmath=False, error_model="numpy")
def _log1p_into(x, out):
    """The kernel's loop shape for ``vlog1p_unit``."""
    for i in range(x.shape[0]):
        out[i] = vlog1p_unit(x[i])


def test_log1p_on_the_unit_interval_is_within_one_ulp_of_libm():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(0, 1, 200_000), np.logspace(-300, 0, 3000),
                        [0.0, 1.0, math.sqrt(2.0) - 1.0, np.nextafter(math.sqrt(2.0) - 1.0, 1.0), 0.5]])
    out = np.empty_like(x)
    _log1p_into(x, out)
    expected = np.array([math.log1p(v) for v in x])
    assert out[x == 0.0].tolist() == [0.0]
    positive = x > 0
    ulps = np.abs(out[positive] - expected[positive]) / np.spacing(expected[positive])
    assert ulps.max() <= 1.0
    assert ulps.mean() < 0.1


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 165, 1000])
def test_lane_sums_equal_exact_sums(n):
    """The fixed-lane sums agree with correctly rounded sums (math.fsum) to a few ulp, for
    lengths below, at and above the lane count, and over any sub-range."""
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=n), rng.normal(size=n)
    matrix = np.concatenate([y, 2 * y])  # two rows, flattened
    index = rng.permutation(n)
    lo, hi = n // 3, n
    tol = 1e-13 * (1 + np.abs(x).sum())
    assert _lane_sum(x, lo, hi) == pytest.approx(math.fsum(x[lo:hi]), abs=tol)
    assert _lane_dot(matrix, n, x, n) == pytest.approx(math.fsum(2 * y * x), abs=4 * tol)
    assert _lane_gather_sum(x, index, lo, hi) == pytest.approx(math.fsum(x[index[lo:hi]]), abs=tol)


def test_compiled_graph_cache_key_follows_the_kernel_source(tmp_path, monkeypatch):
    """PyTensor's on-disk cache of compiled graphs is keyed by the Op's props only; the
    kernel's source hash salts it so that an edited kernel is recompiled."""
    _, key = fused_density._numba_fused_density(fused_density.fused_density)
    assert key == fused_density.kernel_source_key()
    edited = tmp_path / "fused_density.py"
    edited.write_bytes(open(fused_density.__file__, "rb").read() + b"# edited\n")
    monkeypatch.setattr(fused_density, "__file__", str(edited))
    assert fused_density.kernel_source_key() != key


@numba.njit
def _unpack(reals, integers, real_index, integer_index):
    values, columns = fused_density._real(reals, integers, real_index)
    return values.copy(), columns, fused_density._integer(integers, integer_index).copy()


def test_packed_cohort_arrays_read_back_as_packed():
    """Every array of pack_cohort_arrays reads back (flattened, with its column count)."""
    rng = np.random.default_rng(3)
    arrays = {name: rng.normal(size=(2, 5) if name.endswith(("by_covariate", "by_outcome")) else (i % 4,))
              for i, name in enumerate(fused_density.REAL_ARRAYS)}
    arrays["events"] = np.array(7.0)
    arrays.update({name: rng.integers(0, 9, size=i) for i, name in enumerate(fused_density.INTEGER_ARRAYS)})
    reals, integers = fused_density.pack_cohort_arrays(arrays)
    for i, name in enumerate(fused_density.REAL_ARRAYS):
        values, columns, _ = _unpack(reals, integers, i, 0)
        np.testing.assert_array_equal(values, np.ravel(arrays[name]))
        assert columns == (np.shape(arrays[name])[1] if np.ndim(arrays[name]) == 2 else 0)
    for i, name in enumerate(fused_density.INTEGER_ARRAYS):
        np.testing.assert_array_equal(_unpack(reals, integers, 0, i)[2], arrays[name])
