r"""Closed-form PFS2 curve quantities per posterior draw (NumPy only).

For a linear predictor :math:`\eta` and cured fraction :math:`\pi` (0 without cure):

* Weibull PH (reference median :math:`m`, shape :math:`k`,
  :math:`\lambda_0 = m(\ln 2)^{-1/k}`): :math:`H(t) = (t/\lambda_0)^k e^\eta`;
  the time where :math:`H = h^*` is :math:`t = \lambda_0 (h^* e^{-\eta})^{1/k}`;
  :math:`\int_0^\tau e^{-H(t)}dt = c^{-1/k}\,\Gamma(1 + 1/k)\,P(1/k, c\tau^k)` with
  :math:`c = e^\eta\lambda_0^{-k}` and :math:`P` the regularised lower incomplete gamma
  function.
* Piecewise-exponential PH (hazards :math:`h_j` on :math:`[a_j, a_{j+1})`): :math:`H` is
  piecewise linear, inverted interval by interval; the restricted mean sums
  :math:`S(a)(1 - e^{-r(b-a)})/r` over the pieces, :math:`r = h_j e^\eta`.
* Cure: :math:`S(t) = \pi + (1-\pi)e^{-H(t)}`; the median solves
  :math:`e^{-H} = (0.5 - \pi)/(1 - \pi)`, i.e. :math:`h^* = \log\frac{1-\pi}{0.5-\pi}`
  (never reached when :math:`\pi \ge 0.5`); RMST is :math:`\pi\tau + (1-\pi)\,\mathrm{RMST}_u`.

Arrays broadcast: parameters shaped ``(draws, 1)`` against ``η`` shaped ``(draws, patients)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from .loglik import LOG_LOG2


@dataclass(frozen=True)
class Baseline:
    """Baseline parameters of a set of draws (each array broadcastable to ``(draws, …)``).

    ``kind`` is ``"weibull"`` (``log_median``, ``log_shape``) or ``"piecewise"``
    (``log_hazards`` ``(draws, …, J)`` and interval ``edges`` ``(J + 1,)`` ending in inf);
    ``logit_cure`` is ``None`` without a cure fraction.
    """

    kind: str
    log_median: np.ndarray | None = None
    log_shape: np.ndarray | None = None
    log_hazards: np.ndarray | None = None
    edges: np.ndarray | None = None
    logit_cure: np.ndarray | None = None

    @property
    def cure(self) -> np.ndarray:
        return 0.0 if self.logit_cure is None else special.expit(self.logit_cure)


def _weibull_log_scale(b: Baseline) -> tuple[np.ndarray, np.ndarray]:
    k = np.exp(b.log_shape)
    return b.log_median - LOG_LOG2 / k, k


def cumulative_hazard(b: Baseline, eta: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``H(t)`` for times ``t`` on a trailing axis: result ``eta.shape + (T,)``."""
    t = np.asarray(t, dtype=float)
    eta = eta[..., None]
    if b.kind == "weibull":
        log_lam0, k = _weibull_log_scale(b)
        with np.errstate(divide="ignore"):
            log_t = np.log(t)
        return np.exp(k[..., None] * (log_t - log_lam0[..., None]) + eta)
    widths = np.diff(b.edges)
    exposure = np.clip(t[:, None] - b.edges[None, :-1], 0.0, widths[None, :])  # (T, J)
    base = np.exp(b.log_hazards) @ exposure.T  # (..., T)
    return base * np.exp(eta)


def survival(b: Baseline, eta: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``S(t)`` with times on a trailing axis (see :func:`cumulative_hazard`)."""
    s_u = np.exp(-cumulative_hazard(b, eta, t))
    if b.logit_cure is None:
        return s_u
    pi = np.asarray(b.cure)[..., None]
    return pi + (1.0 - pi) * s_u


def survival_by_time(b: Baseline, eta: np.ndarray, t: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``S(t)`` of one patient with times first and draws last, ``(T, S)``: the numbers of
    ``survival(b, eta[:, None], t)[:, 0, :].T``, computed in place in that layout (what
    quantiles over the draws read), into ``out`` if given.

    ``eta`` is ``(S,)``; the baseline's arrays are ``(S, 1)`` (or ``(S,)``).
    """
    t = np.asarray(t, dtype=float)
    out = np.empty((t.size, eta.size)) if out is None else out
    if b.kind != "weibull":
        out[...] = survival(b, eta[:, None], t)[:, 0, :].T
        return out
    log_lam0, k = _weibull_log_scale(b)
    with np.errstate(divide="ignore"):
        log_t = np.log(t)[:, None]
    np.subtract(log_t, log_lam0.reshape(-1), out=out)  # as cumulative_hazard, element by element
    np.multiply(k.reshape(-1), out, out=out)
    np.add(out, eta, out=out)
    np.exp(out, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    if b.logit_cure is not None:  # as survival: pi + (1 - pi) * s_u
        pi = np.asarray(b.cure).reshape(-1)
        np.multiply(1.0 - pi, out, out=out)
        np.add(pi, out, out=out)
    return out


def quantile_time(b: Baseline, eta: np.ndarray, surv: float = 0.5) -> np.ndarray:
    """Time where ``S(t) = surv`` (``inf`` when the cured fraction keeps S above it)."""
    pi = np.asarray(b.cure)
    with np.errstate(divide="ignore", invalid="ignore"):
        target = np.where(pi < surv, np.log((1.0 - pi) / np.maximum(surv - pi, 1e-300)), np.inf)
    target = np.broadcast_to(target, np.broadcast_shapes(np.shape(target), eta.shape))
    base_target = target * np.exp(-eta)  # baseline cumulative hazard to reach
    if b.kind == "weibull":
        log_lam0, k = _weibull_log_scale(b)
        with np.errstate(divide="ignore", over="ignore"):
            return np.exp(log_lam0 + np.log(base_target) / k)
    hazards = np.exp(b.log_hazards)  # (..., J)
    widths = np.diff(b.edges)[:-1]
    cum_at_edges = np.concatenate([np.zeros(hazards.shape[:-1] + (1,)),
                                   np.cumsum(hazards[..., :-1] * widths, axis=-1)], axis=-1)  # (..., J)
    cum_at_edges = np.broadcast_to(cum_at_edges, base_target.shape + (hazards.shape[-1],))
    j = (cum_at_edges <= base_target[..., None]).sum(axis=-1) - 1
    c_j = np.take_along_axis(cum_at_edges, j[..., None], -1)[..., 0]
    h_j = np.take_along_axis(np.broadcast_to(hazards, cum_at_edges.shape), j[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore"):
        out = b.edges[j] + (base_target - c_j) / h_j
    return np.where(np.isfinite(base_target), out, np.inf)


def restricted_mean(b: Baseline, eta: np.ndarray, tau: float) -> np.ndarray:
    """Restricted mean survival time ``∫_0^τ S(t) dt`` (months)."""
    if b.kind == "weibull":
        log_lam0, k = _weibull_log_scale(b)
        log_c = eta - k * log_lam0
        x = np.exp(log_c + k * np.log(tau))
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            rm_u = np.exp(-log_c / k + special.gammaln(1.0 + 1.0 / k)) * special.gammainc(1.0 / k, x)
        rm_u = np.where(x < 1e-10, tau, rm_u)
    else:
        edges = np.minimum(b.edges, tau)
        rate = np.exp(b.log_hazards + eta[..., None])  # (..., J)
        widths = np.diff(edges)
        cum = np.concatenate([np.zeros(rate.shape[:-1] + (1,)), np.cumsum(rate * widths, -1)[..., :-1]], -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            piece = np.exp(-cum) * np.where(rate * widths > 1e-12, -np.expm1(-rate * widths) / rate, widths)
        rm_u = piece.sum(-1)
    pi = np.asarray(b.cure)
    return pi * tau + (1.0 - pi) * rm_u
