r"""Finite mixtures of normal distributions on the real line, with densities

.. math:: p(x) = \sum_{k=1}^{K} w_k \, \phi(x;\, m_k, s_k^2), \qquad
          w_k \ge 0,\ \sum_k w_k = 1,

the usual parametric form of meta-analytic-predictive (MAP) priors (Schmidli et al.
2014, Biometrics 70:1023-1032; the R package RBesT).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special


def _as_vector(name: str, values: Any) -> np.ndarray:
    """Return ``values`` as a fresh, finite 1-D float array (``ValueError`` otherwise)."""
    try:
        arr = np.array(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"mixture {name} must be numbers: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"mixture {name} must be a 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"mixture {name} must be finite, element {bad} is {arr[bad]}")
    return arr


@dataclass(frozen=True, eq=False)
class NormalMixture:
    r"""Mixture of normals :math:`\sum_k w_k N(m_k, s_k^2)` (immutable).

    Parameters
    ----------
    weights, means, sds
        1-D arrays of equal length :math:`K \ge 1`, all finite; weights >= 0 summing
        to one within ``1e-8`` (then renormalised exactly); sds > 0. Stored as
        read-only copies. A violated condition raises ``ValueError``.
    """

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray

    def __post_init__(self) -> None:
        w, m, s = (_as_vector(n, getattr(self, n)) for n in ("weights", "means", "sds"))
        if not w.size == m.size == s.size or w.size == 0:
            raise ValueError("mixture weights, means and sds need one common length >= 1, "
                             f"got {w.size}, {m.size}, {s.size}")
        if np.any(w < 0):
            raise ValueError(f"mixture weights must be >= 0, got {w.min()}")
        if abs(w.sum() - 1.0) > 1e-8:
            raise ValueError(f"mixture weights must sum to 1, they sum to {w.sum():.10g}")
        if np.any(s <= 0):
            raise ValueError(f"mixture sds must be > 0, got {s.min()}")
        for name, arr in (("weights", w / w.sum()), ("means", m), ("sds", s)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @classmethod
    def normal(cls, mean: float, sd: float) -> NormalMixture:
        """One-component mixture :math:`N(\\text{mean}, \\text{sd}^2)`."""
        return cls([1.0], [mean], [sd])

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> NormalMixture:
        """Inverse of :meth:`to_dict`; a missing key raises ``ValueError``."""
        if not isinstance(d, Mapping) or any(k not in d for k in ("weights", "means", "sds")):
            raise ValueError("a mixture dictionary needs keys 'weights', 'means' and 'sds'")
        return cls(d["weights"], d["means"], d["sds"])

    def to_dict(self) -> dict[str, list[float]]:
        """``{"weights": [...], "means": [...], "sds": [...]}`` of Python floats."""
        return {k: [float(v) for v in getattr(self, k)] for k in ("weights", "means", "sds")}

    @property
    def n_components(self) -> int:
        """Number of components :math:`K`."""
        return int(self.weights.size)

    @property
    def mean(self) -> float:
        r"""Mean :math:`\mu = \sum_k w_k m_k`."""
        return float(np.sum(self.weights * self.means))

    @property
    def var(self) -> float:
        r"""Variance :math:`\sum_k w_k (s_k^2 + m_k^2) - \mu^2` (law of total variance)."""
        return float(np.sum(self.weights * (self.sds**2 + (self.means - self.mean) ** 2)))

    @property
    def sd(self) -> float:
        """Standard deviation, the square root of :attr:`var`."""
        return float(np.sqrt(self.var))

    @property
    def median(self) -> float:
        """Median, :math:`F^{-1}(1/2)`."""
        return float(self.ppf(0.5))

    def _z(self, x: Any) -> np.ndarray:
        return (np.asarray(x, dtype=float)[..., None] - self.means) / self.sds

    def pdf(self, x: Any) -> np.ndarray:
        r"""Density :math:`p(x) = \sum_k w_k \phi(x; m_k, s_k^2)`, elementwise in ``x``."""
        dens = np.exp(-0.5 * self._z(x) ** 2) / (self.sds * np.sqrt(2 * np.pi))
        return np.sum(self.weights * dens, axis=-1)

    def logpdf(self, x: Any) -> np.ndarray:
        r"""Log density :math:`\log p(x) = \operatorname{logsumexp}_k
        [\log w_k + \log\phi(x; m_k, s_k^2)]`, stable far in the tails."""
        with np.errstate(divide="ignore"):
            terms = np.log(self.weights / self.sds) - 0.5 * self._z(x) ** 2
        return special.logsumexp(terms, axis=-1) - 0.5 * np.log(2 * np.pi)

    def cdf(self, x: Any) -> np.ndarray:
        r"""Distribution function :math:`F(x) = \sum_k w_k \Phi((x - m_k)/s_k)`."""
        return np.sum(self.weights * special.ndtr(self._z(x)), axis=-1)

    def ppf(self, q: Any) -> np.ndarray:
        r"""Quantile function :math:`F^{-1}(q)`, elementwise, ``q`` in [0, 1]: Brent's method
        in the bracket :math:`[\min_k Q_k(q), \max_k Q_k(q)]` of the component quantiles,
        which contains :math:`F^{-1}(q)` because :math:`F` is an average of the :math:`\Phi_k`.
        """
        q = np.asarray(q, dtype=float)
        if not np.all((q >= 0) & (q <= 1)):
            raise ValueError("quantile levels must lie in [0, 1]")
        return np.vectorize(self._ppf_scalar, otypes=[float])(q)[()]

    def _ppf_scalar(self, q: float) -> float:
        if q in (0.0, 1.0):
            return -np.inf if q == 0.0 else np.inf
        comp = (self.means + self.sds * special.ndtri(q))[self.weights > 0]
        lo, hi = float(comp.min()), float(comp.max())
        f_lo, f_hi = float(self.cdf(lo)) - q, float(self.cdf(hi)) - q
        if lo == hi or f_lo >= 0:  # single component, or rounding at the bracket ends
            return lo
        if f_hi <= 0:
            return hi
        from scipy import optimize  # lazy: keeps `import rechallenge` light

        return float(optimize.brentq(lambda x: float(self.cdf(x)) - q, lo, hi,
                                     xtol=1e-13, rtol=8 * np.finfo(float).eps, maxiter=500))

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        r"""Central interval :math:`(F^{-1}(\alpha/2),\, F^{-1}(1-\alpha/2))`,
        :math:`\alpha = 1 - \text{level}`."""
        if not 0 < level < 1:
            raise ValueError(f"interval level must be in (0, 1), got {level}")
        lo, hi = self.ppf([(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` values: a component index with probabilities ``weights``, then a normal."""
        if not isinstance(rng, np.random.Generator) or int(n) != n or n < 0:
            raise ValueError("sample() needs an integer n >= 0 and a numpy Generator rng")
        k = rng.choice(self.n_components, size=int(n), p=self.weights)
        return rng.normal(self.means[k], self.sds[k])

    def compress(self, max_components: int = 3, tol: float = 0.005) -> NormalMixture:
        r"""Approximate by a mixture of at most ``max_components`` components.

        The density is discretised on 2000 points :math:`x_j` from :math:`F^{-1}(10^{-6})`
        to :math:`F^{-1}(1-10^{-6})`, weights :math:`v_j \propto p(x_j)\,\Delta x`. For
        :math:`K = 1, 2, \dots`, K normals are fitted by weighted EM (Dempster, Laird &
        Rubin 1977) from K quantile bins and from each split of the (K-1)-component fit;
        the fit with the smallest :math:`D_K = \max_j |\hat F(x_j) - F(x_j)|` is kept and
        the first with :math:`D_K <` ``tol`` returned (else the closest). EM keeps the grid
        mean and variance exactly. Zero-weight components are dropped; with no more
        than K left the mixture is returned as it is.
        """
        if int(max_components) != max_components or max_components < 1 or not tol > 0:
            raise ValueError("compress() needs an integer max_components >= 1 and tol > 0, "
                             f"got {max_components} and {tol}")
        used = self.weights > 0
        if used.sum() <= 1:
            return NormalMixture.normal(self.means[used][0], self.sds[used][0])
        x = np.linspace(*self.ppf([1e-6, 1 - 1e-6]), 2000)
        v, target = self.pdf(x), self.cdf(x)
        v = v / v.sum()
        best, best_err = self, np.inf
        for k in range(1, int(max_components) + 1):
            if k >= used.sum():
                return NormalMixture(self.weights[used], self.means[used], self.sds[used])
            bins = np.minimum((np.cumsum(v) - v / 2) * k, k - 1).astype(int)
            starts = [np.eye(k)[:, bins]] + (_splits(x, best) if k > 1 else [])
            fits = [_weighted_em(x, v, start * v) for start in starts]
            errs = [float(np.max(np.abs(f.cdf(x) - target))) for f in fits]
            best, best_err = fits[int(np.argmin(errs))], min(errs)
            if best_err < tol:
                break
        return best


def _responsibilities(x: np.ndarray, w: np.ndarray, m: np.ndarray, s: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    r"""E-step :math:`r_{kj} \propto w_k \phi(x_j; m_k, s_k^2)`; also :math:`\log p(x_j)` + c."""
    logd = np.log(w / s)[:, None] - 0.5 * ((x - m[:, None]) / s[:, None]) ** 2
    top = logd.max(axis=0)
    dens = np.exp(logd - top)
    total = dens.sum(axis=0)
    return dens / total, np.log(total) + top


def _splits(x: np.ndarray, fit: NormalMixture) -> list[np.ndarray]:
    """Starting assignments that split one component of ``fit`` at its mean."""
    r, _ = _responsibilities(x, fit.weights, fit.means, fit.sds)
    left = x < fit.means[:, None]
    return [np.vstack([np.delete(r, j, axis=0), r[j] * left[j], r[j] * ~left[j]])
            for j in range(fit.n_components)]


def _weighted_em(x: np.ndarray, v: np.ndarray, rv: np.ndarray, max_iter: int = 500
                 ) -> NormalMixture:
    r"""Fit normals to points ``x`` with weights ``v`` (sum 1) by EM, from ``rv`` = r v.

    M-step :math:`w_k = \sum_j v_j r_{kj}`, :math:`m_k = \sum_j v_j r_{kj} x_j / w_k`,
    :math:`s_k^2 = \sum_j v_j r_{kj} (x_j - m_k)^2 / w_k`; stops at a log-likelihood gain < 1e-9.
    """
    floor, old = (x[1] - x[0]) / 2, -np.inf
    for _ in range(max_iter):
        w = np.maximum(rv.sum(axis=1), 1e-300)
        m = rv @ x / w
        s = np.maximum(np.sqrt(np.einsum("kj,kj->k", rv, (x - m[:, None]) ** 2) / w), floor)
        r, loglik = _responsibilities(x, w, m, s)
        rv, ll = r * v, float(v @ loglik)
        if ll - old < 1e-9:
            break
        old = ll
    return NormalMixture(w / w.sum(), m, s)


def mix(components: Sequence[tuple[float, NormalMixture]]) -> NormalMixture:
    r"""Mixture of mixtures :math:`\sum_i a_i p_i(x)` from ``(a_i, p_i)`` pairs.

    The :math:`a_i` must be finite, >= 0 and not all 0; they are normalised to sum to one.
    """
    a = np.array([float(c[0]) for c in components])
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0) or a.sum() <= 0:
        raise ValueError(f"mix() needs weights finite, >= 0, not all 0; got {a.tolist()}")
    if not all(isinstance(m, NormalMixture) for _, m in components):
        raise TypeError("mix() needs (weight, NormalMixture) pairs")
    a = a / a.sum()
    w = np.concatenate([ai * m.weights for ai, (_, m) in zip(a, components)])
    return NormalMixture(w / w.sum(), np.concatenate([m.means for _, m in components]),
                         np.concatenate([m.sds for _, m in components]))


def stack_mixtures(mixtures: Sequence[NormalMixture]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weights, means, sds)`` arrays of shape ``(K, C)`` for K mixtures, C = most components.

    Mixtures with fewer than C components are padded **exactly**: their heaviest
    component is split into equal-weight copies (same mean and sd), so every row has the
    same density as its mixture. This lets a vector of parameters with different
    mixture priors be one vectorised random variable (one node in the model graph).
    """
    if not mixtures:
        return np.zeros((0, 1)), np.zeros((0, 1)), np.ones((0, 1))
    c = max(m.n_components for m in mixtures)
    rows = []
    for m in mixtures:
        w, mu, sd = (list(v) for v in (m.weights, m.means, m.sds))
        pad = c - m.n_components
        if pad:
            j = int(np.argmax(m.weights))
            w[j] = m.weights[j] / (pad + 1)
            w += [w[j]] * pad
            mu += [m.means[j]] * pad
            sd += [m.sds[j]] * pad
        rows.append((w, mu, sd))
    weights, means, sds = (np.array([r[i] for r in rows], dtype=float) for i in range(3))
    return weights, means, sds
