"""Log-likelihood and survival formulas, written once for NumPy and PyTensor.

Every function takes the array module ``xp`` (``numpy`` or ``pytensor.tensor``) as its
first argument and uses only operations both provide, so the PyMC model
(:mod:`rechallenge.model`) and the NumPy post-processing (pointwise log-likelihood for
LOO, predictions) evaluate the very same expressions.

PFS2 (time ``t`` in months, event ``d``, linear predictor ``η``):

* Weibull PH with reference median ``m`` and shape ``k``:
  ``λ0 = m (ln 2)^(−1/k)``, ``H(t) = (t/λ0)^k e^η``,
  ``log h(t) = log k − log λ0 + (k − 1)(log t − log λ0) + η``.
* Piecewise-exponential PH with hazards ``h_j`` on intervals ``[c_{j−1}, c_j)``:
  ``H(t) = e^η Σ_j h_j E_j(t)`` (``E_j`` time spent in interval j),
  ``log h(t) = log h_{j(t)} + η``.
* Mixture cure (optional), cured fraction ``π``: ``S(t) = π + (1 − π) S_u(t)``;
  ``ℓ = d [log(1−π) + log h − H] + (1 − d) log(π + (1−π) e^{−H})``.
  Without cure: ``ℓ = d log h − H``.

irAE recurrence, sequential (continuation-ratio) logit for none < grade 1–2 < grade ≥ 3
(Agresti 2010, *Analysis of Ordinal Categorical Data*, ch. 4):
``P(Y ≥ 1) = σ(a + ζ)``, ``P(Y = 2 | Y ≥ 1) = σ(b + ζ)``, so
``P(Y ≥ 2) = σ(a + ζ) σ(b + ζ)``; ``ζ`` is the covariate/group predictor and
``exp(γ)`` the odds ratio of any-grade recurrence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LOG_LOG2 = math.log(math.log(2.0))


def log_sigmoid(xp: Any, x: Any) -> Any:
    """``log σ(x) = −softplus(−x)``, stable for large |x|."""
    return -xp.logaddexp(0.0, -x)


def weibull_log_scale(log_median: Any, log_shape: Any, xp: Any = np) -> Any:
    """``log λ0 = log m − log(ln 2) / k``."""
    return log_median - LOG_LOG2 / xp.exp(log_shape)


def weibull_terms(xp: Any, t: Any, log_median: Any, log_shape: Any, eta: Any) -> tuple[Any, Any]:
    """``(log h(t), H(t))`` of the Weibull PH model."""
    k = xp.exp(log_shape)
    log_lam0 = weibull_log_scale(log_median, log_shape, xp)
    z = xp.log(t) - log_lam0
    log_h = log_shape - log_lam0 + (k - 1.0) * z + eta
    cum_h = xp.exp(k * z + eta)
    return log_h, cum_h


def piecewise_terms(xp: Any, log_hazards: Any, exposure: Any, interval: Any, eta: Any,
                    ) -> tuple[Any, Any]:
    """``(log h(t), H(t))`` of the piecewise-exponential PH model.

    ``exposure`` is ``(n, J)`` (time in each interval), ``interval`` the index of the
    interval containing ``t`` and ``log_hazards`` the ``(J,)`` log baseline hazards.
    """
    log_h = log_hazards[interval] + eta
    cum_h = xp.exp(eta) * (exposure * xp.exp(log_hazards)).sum(axis=-1)
    return log_h, cum_h


def survival_loglik(xp: Any, event: Any, log_h: Any, cum_h: Any, logit_cure: Any = None) -> Any:
    """Pointwise log-likelihood of right-censored PFS2 (see module docstring)."""
    if logit_cure is None:
        return event * log_h - cum_h
    log_pi = log_sigmoid(xp, logit_cure)
    log_1m_pi = log_sigmoid(xp, -logit_cure)
    return (event * (log_1m_pi + log_h - cum_h)
            + (1.0 - event) * xp.logaddexp(log_pi, log_1m_pi - cum_h))


def survival_function(xp: Any, cum_h: Any, logit_cure: Any = None) -> Any:
    """``S(t) = π + (1 − π) e^{−H(t)}`` (``π = 0`` without cure)."""
    s_u = xp.exp(-cum_h)
    if logit_cure is None:
        return s_u
    pi = 1.0 / (1.0 + xp.exp(-logit_cure))
    return pi + (1.0 - pi) * s_u


def irae_loglik(xp: Any, y: Any, a_any: Any, b_severe: Any, zeta: Any) -> Any:
    """Pointwise log-likelihood of the sequential-logit irAE model.

    ``y`` is coded 0 (none), 1 (grade 1–2), 2 (grade ≥ 3); entries outside {0,1,2}
    (e.g. −1 for not assessed) contribute 0.
    """
    # xp.equal, not ==: PyTensor does not overload == (it compares identity).
    onehot = [1.0 * xp.equal(y, k) for k in (0, 1, 2)]
    return irae_loglik_onehot(xp, *onehot, a_any, b_severe, zeta)


def irae_loglik_onehot(xp: Any, is0: Any, is1: Any, is2: Any, a_any: Any, b_severe: Any,
                       zeta: Any) -> Any:
    """:func:`irae_loglik` with the outcome given as 0/1 indicators (all 0: not assessed).

    ``log σ(−x) = log σ(x) − x`` saves one softplus per stage.
    """
    first = a_any + zeta
    second = b_severe + zeta
    log_p_first = log_sigmoid(xp, first)
    log_p_second = log_sigmoid(xp, second)
    return (is0 * (log_p_first - first) + (is1 + is2) * log_p_first
            + is1 * (log_p_second - second) + is2 * log_p_second)


def irae_probabilities(xp: Any, a_any: Any, b_severe: Any, zeta: Any) -> tuple[Any, Any]:
    """``(P(any grade), P(grade ≥ 3))`` of the sequential-logit model."""
    p_any = 1.0 / (1.0 + xp.exp(-(a_any + zeta)))
    p_severe_given_any = 1.0 / (1.0 + xp.exp(-(b_severe + zeta)))
    return p_any, p_any * p_severe_given_any


def exposure_matrix(t: np.ndarray, cuts: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Time spent in each interval of ``[0, c1), [c1, c2), …, [c_last, ∞)`` and the index
    of the interval that contains ``t`` (NumPy only: data preparation)."""
    t = np.asarray(t, dtype=float)
    edges = np.concatenate([[0.0], np.asarray(cuts, dtype=float), [np.inf]])
    exposure = np.clip(t[:, None] - edges[None, :-1], 0.0, np.diff(edges)[None, :])
    interval = np.searchsorted(edges, t, side="right") - 1
    return exposure, np.clip(interval, 0, len(edges) - 2)
