r"""SBC ranks and tests of their uniformity.

Simulation-based calibration (Talts et al. 2018, arXiv:1804.06788): if
:math:`\tilde\theta \sim p(\theta)`, :math:`\tilde y \sim p(y \mid \tilde\theta)` and
:math:`\theta_1, \dots, \theta_L` are independent draws from the exact posterior
:math:`p(\theta \mid \tilde y)`, then the rank
:math:`r = \#\{l : f(\theta_l) < f(\tilde\theta)\}` of any test quantity :math:`f` is
uniform on :math:`\{0, \dots, L\}`. Departures reveal a sampler, model or simulator
that does not match. Modrák et al. (2023, *Bayesian Analysis*, "Simulation-based
calibration checking for Bayesian computation: the choice of test quantities shapes
sensitivity") show that quantities depending on the data, notably the joint
log-likelihood :math:`f(\theta) = \log p(\tilde y \mid \theta)`, catch problems that the
parameters' own ranks miss.

Uniformity tests
----------------
* :func:`ecdf_uniformity` (primary): the simultaneous ECDF test of Säilynoja, Bürkner &
  Vehtari (2022, *Stat Comput* 32:32). For :math:`N` ranks, at every
  :math:`r = 0, \dots, L-1` the count :math:`K_r = \#\{i : r_i \le r\}` is
  Binomial(:math:`N, z_r`), :math:`z_r = (r+1)/(L+1)`, under uniformity; the statistic
  is the smallest two-sided binomial tail probability
  :math:`T = \min_r 2\min\{F(K_r), 1 - F(K_r - 1)\}`, and its null distribution (which
  accounts for the dependence between the :math:`K_r`) is obtained by simulating
  uniform ranks (20,000 sets, exact for discrete ranks). The p-value is
  :math:`(1 + \#\{T^* \le T\})/(1 + 20000)`; its :math:`\alpha` quantile gives the
  simultaneous :math:`1-\alpha` band of the ECDF plots (:func:`ecdf_band`).
* :func:`chi2_uniformity`: Pearson's :math:`\chi^2` on ranks binned into :math:`B`
  equal bins (Talts et al.'s histogram), reported alongside.

Multiplicity: the ECDF p-values of all test quantities are adjusted with Holm's
step-down method (:func:`holm`; Holm 1979, *Scand J Stat* 6:65), which controls the
family-wise error rate under any dependence between the quantities. The simulated null
sets the resolution: the smallest p-value is :math:`1/20001`, so with :math:`m`
quantities the smallest Holm-adjusted value is :math:`m/20001` (0.00125 for the 25
quantities of the default model); the chi-square p-value is not so limited.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats

__all__ = ["rank_of", "thin_indices", "chi2_uniformity", "ecdf_uniformity", "ecdf_band", "holm",
           "N_SIM"]

#: Simulated uniform rank sets behind the ECDF test's null distribution.
N_SIM = 20000


def thin_indices(n_draws: int, L: int) -> np.ndarray:
    """``L`` evenly spaced indices into ``n_draws`` draws (thinning before ranking)."""
    if L > n_draws:
        raise ValueError(f"cannot thin {n_draws} draws to {L}")
    return (np.arange(L) * n_draws) // L


def rank_of(value: float, draws: np.ndarray, rng: np.random.Generator) -> int:
    """``#{draws < value}``, ties broken uniformly at random (0..len(draws))."""
    d = np.asarray(draws, dtype=float)
    less = int(np.sum(d < value))
    ties = int(np.sum(d == value))
    return less + (int(rng.integers(0, ties + 1)) if ties else 0)


def _bins(L: int, N: int) -> int:
    """Largest divisor of L+1 that is <= 20 and leaves >= 5 expected ranks per bin."""
    best = 1
    for b in range(1, min(20, L + 1) + 1):
        if (L + 1) % b == 0 and N / b >= 5:
            best = b
    return best


def chi2_uniformity(ranks: np.ndarray, L: int, bins: int | None = None) -> tuple[float, float, int]:
    """Pearson chi-square test of uniform ranks in ``bins`` equal bins: ``(stat, p, bins)``."""
    r = np.asarray(ranks, dtype=np.int64)
    r = r[r >= 0]
    if r.size == 0:
        return np.nan, np.nan, 0
    b = bins or _bins(L, r.size)
    if b < 2:
        return np.nan, np.nan, b
    counts = np.bincount(r * b // (L + 1), minlength=b)
    expected = r.size / b
    stat = float(np.sum((counts - expected) ** 2) / expected)
    return stat, float(stats.chi2.sf(stat, b - 1)), b


def _local_min_p(below: np.ndarray, N: int, L: int) -> np.ndarray:
    """``min_r`` two-sided binomial tail probability of the ECDF counts (last axis = r)."""
    z = (np.arange(L) + 1) / (L + 1)
    lower = stats.binom.cdf(below, N, z)
    upper = stats.binom.sf(below - 1, N, z)
    return np.minimum(1.0, 2 * np.minimum(lower, upper)).min(axis=-1)


def _counts_below(ranks: np.ndarray, L: int) -> np.ndarray:
    return np.cumsum(np.bincount(ranks, minlength=L + 1))[:L]


@lru_cache(maxsize=32)
def _null_statistics(N: int, L: int, n_sim: int = N_SIM, seed: int = 20220322) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(N, np.full(L + 1, 1.0 / (L + 1)), size=n_sim)
    stat = _local_min_p(np.cumsum(counts, axis=1)[:, :L], N, L)
    stat.sort()
    return stat


def ecdf_uniformity(ranks: np.ndarray, L: int, n_sim: int = N_SIM) -> float:
    """p-value of the simultaneous ECDF uniformity test (see the module docstring)."""
    r = np.asarray(ranks, dtype=np.int64)
    r = r[r >= 0]
    if r.size == 0:
        return np.nan
    observed = _local_min_p(_counts_below(r, L), r.size, L)
    null = _null_statistics(int(r.size), int(L), int(n_sim))
    return float((1 + np.searchsorted(null, observed, side="right")) / (1 + null.size))


def ecdf_band(N: int, L: int, alpha: float = 0.05, n_sim: int = N_SIM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous ``1 - alpha`` band of the ECDF *difference* of ``N`` uniform ranks.

    Returns ``(z, lower, upper)`` at ``z_r = (r+1)/(L+1)``, ``r = 0..L-1``: the band of
    ``K_r/N - z_r`` whose pointwise binomial tail probability is at least the adjusted
    level ``gamma`` (the ``alpha`` quantile of the null statistic).
    """
    null = _null_statistics(int(N), int(L), int(n_sim))
    gamma = float(np.quantile(null, alpha))
    z = (np.arange(L) + 1) / (L + 1)
    lo = stats.binom.ppf(gamma / 2, N, z)
    hi = stats.binom.ppf(1 - gamma / 2, N, z)
    return z, lo / N - z, hi / N - z


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok])]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out
