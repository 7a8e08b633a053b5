r"""R-hat and effective sample sizes of many parameters at once.

The estimators are ArviZ's ``rhat(method="rank")``, ``ess(method="bulk")`` and
``ess(method="tail")`` (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021, *Bayesian
Analysis* 16:667–718), computed here for every parameter of a fit in one vectorised pass.
ArviZ 0.x applies them one scalar parameter at a time through a Python loop, about 3 ms
per parameter at 4 × 1,000 draws: 0.14 s for the 46 parameters of the default model, a
fifth of a 300-patient refit (benchmarks/RESULTS.md, 2026-11-22, session 9), and every
simulation-study replicate pays it. The steps follow ArviZ's code line by line (its
``_split_chains``, ``_z_scale``, ``_rhat``, ``_ess``, ``_ess_quantile``, and its
autocovariance :func:`arviz.stats.stats_utils.autocov`); the tests compare all three with
ArviZ on real fits and on difficult arrays (ties, constants, slow mixing, odd lengths).

For draws :math:`θ` of shape (chain, draw), split into 2 × chains half-chains:

* **rank normalisation** :math:`z = Φ^{-1}((r − 3/8)/(S + 1/4))`, r the average rank of
  a draw among all S split draws;
* **R-hat** :math:`\hat R = \sqrt{(B/W + n − 1)/n}` of the half-chains (n draws each,
  B = n × variance of the half-chain means, W = mean within-chain variance), computed for
  z (bulk) and for z of :math:`|θ − \mathrm{median}(θ)|` (tails); the larger is reported;
* **ESS** :math:`S/\hat τ` with :math:`\hat τ = −1 + 2\sum_{t} \hat ρ_t` truncated by
  Geyer's initial positive and monotone sequences: bulk for z, tail the smaller of the
  ESS of the indicators :math:`θ ≤ q_{0.05}` and :math:`θ ≤ q_{0.95}`.
"""

from __future__ import annotations

import numpy as np
from arviz.stats.stats_utils import autocov
from scipy import special, stats
from scipy.stats.mstats import mquantiles

#: ArviZ's minimum shapes: R-hat needs 2 chains and 4 draws, ESS 1 chain and 4 draws.
_MIN_DRAWS = 4
#: Above this many tied neighbours a parameter is ranked by ``scipy.stats.rankdata``
#: instead of run by run (:func:`_z_scale`).
_FEW_TIES = 64


def _split_chains(draws: np.ndarray) -> np.ndarray:
    """(..., chain, draw) → (..., 2 chain, draw // 2): first halves, then last halves."""
    half = draws.shape[-1] // 2
    return np.concatenate([draws[..., :half], draws[..., draws.shape[-1] - half:]], axis=-2)


def _z_scale(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised draws: average ranks over (chain, draw), Blom's offset 3/8.

    :math:`z = Φ^{-1}((r − 3/8)/(S + 1/4))` depends on a draw's rank r only, so the S
    scores are computed once and placed by one argsort per parameter; a run of tied draws
    (sorted positions i..i+L−1) gets the score of their average rank i + (L + 1)/2, as
    ``scipy.stats.rankdata`` (ArviZ's ranks) gives. Folded draws always tie at the
    median, so ties are handled run by run rather than by re-ranking the parameter. The
    same numbers as ArviZ's at about a third of the time (``ndtri`` of every draw and
    rankdata's stable sort were most of it).
    """
    flat = draws.reshape(-1, draws.shape[-2] * draws.shape[-1])
    size = flat.shape[-1]
    order = np.argsort(flat, axis=-1)
    ordered = np.take_along_axis(flat, order, axis=-1)

    def score(rank):
        return special.ndtri((rank - 3 / 8) / (size - 2 * 3 / 8 + 1))

    scores = np.broadcast_to(score(np.arange(1.0, size + 1.0)), flat.shape).copy()
    tied = ordered[:, 1:] == ordered[:, :-1]
    many = tied.sum(axis=-1) > _FEW_TIES
    for row, position in zip(*np.nonzero(tied & ~many[:, None])):
        if position > 0 and ordered[row, position - 1] == ordered[row, position]:
            continue  # inside a run already scored from its first position
        end = position + 1
        while end + 1 < size and ordered[row, end + 1] == ordered[row, position]:
            end += 1
        scores[row, position:end + 1] = score(position + (end - position + 2) / 2)
    z = np.empty(flat.shape)
    np.put_along_axis(z, order, scores, axis=-1)
    if many.any():  # e.g. a stuck chain: rank the whole parameter
        z[many] = score(stats.rankdata(flat[many], method="average", axis=-1))
    return z.reshape(draws.shape)


def _rhat(draws: np.ndarray) -> np.ndarray:
    """Potential scale reduction of (..., chain, draw) (ArviZ's ``_rhat``)."""
    n = draws.shape[-1]
    chain_mean = draws.mean(axis=-1)
    chain_var = draws.var(axis=-1, ddof=1)
    between = n * chain_mean.var(axis=-1, ddof=1)
    within = chain_var.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _geyer_tau(rho: np.ndarray, n_draw: int, total: int) -> float:
    """Integrated autocorrelation time from autocorrelations ``rho[t]`` (t ≥ 1), with
    Geyer's initial positive and monotone sequences: ArviZ's ``_ess`` loops, verbatim."""
    rho_hat_t = np.zeros(n_draw)
    rho_hat_even = 1.0
    rho_hat_t[0] = rho_hat_even
    rho_hat_odd = rho[1]
    rho_hat_t[1] = rho_hat_odd
    t = 1
    while t < (n_draw - 3) and (rho_hat_even + rho_hat_odd) > 0.0:
        rho_hat_even = rho[t + 1]
        rho_hat_odd = rho[t + 2]
        if (rho_hat_even + rho_hat_odd) >= 0:
            rho_hat_t[t + 1] = rho_hat_even
            rho_hat_t[t + 2] = rho_hat_odd
        t += 2
    max_t = t - 2
    if rho_hat_even > 0:
        rho_hat_t[max_t + 1] = rho_hat_even
    t = 1
    while t <= max_t - 2:
        if (rho_hat_t[t + 1] + rho_hat_t[t + 2]) > (rho_hat_t[t - 1] + rho_hat_t[t]):
            rho_hat_t[t + 1] = (rho_hat_t[t - 1] + rho_hat_t[t]) / 2.0
            rho_hat_t[t + 2] = rho_hat_t[t + 1]
        t += 2
    if np.isnan(rho_hat_t).any():
        return np.nan
    tau_hat = -1.0 + 2.0 * np.sum(rho_hat_t[: max_t + 1]) + np.sum(rho_hat_t[max_t + 1: max_t + 2])
    return max(tau_hat, 1 / np.log10(total))


def _ess(draws: np.ndarray) -> np.ndarray:
    """Effective sample size of each parameter of (parameter, chain, draw) (ArviZ's ``_ess``)."""
    draws = np.asarray(draws, dtype=float)
    n_param, n_chain, n_draw = draws.shape
    total = n_chain * n_draw
    out = np.full(n_param, float(total))
    spread = draws.max(axis=(-2, -1)) - draws.min(axis=(-2, -1))
    varying = np.flatnonzero(~(spread < np.finfo(float).resolution))
    if varying.size == 0:
        return out
    sample = draws[varying]
    acov = autocov(sample, axis=-1)
    mean_var = acov[..., 0].mean(axis=-1) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus = var_plus + sample.mean(axis=-1).var(axis=-1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(axis=-2)) / var_plus[:, None]
    for row, param in enumerate(varying):
        out[param] = total / _geyer_tau(rho[row], n_draw, total)
    return out


def _valid(draws: np.ndarray, min_chains: int) -> np.ndarray:
    """ArviZ's ``not_valid``, negated, per parameter: finite draws and a large enough shape."""
    shape_ok = draws.shape[-2] >= min_chains and draws.shape[-1] >= _MIN_DRAWS
    return np.isfinite(draws).all(axis=(-2, -1)) & shape_ok


def convergence_summary(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS and tail ESS of each parameter.

    Parameters
    ----------
    draws
        Array of shape (parameter, chain, draw).

    Returns
    -------
    ``(rhat, ess_bulk, ess_tail)``, one value per parameter each; NaN where ArviZ gives
    NaN (non-finite draws; fewer than 4 draws; for R-hat, fewer than 2 chains or a
    constant parameter). The rank-normalised split draws are computed once for R-hat and
    bulk ESS.
    """
    draws = np.asarray(draws, dtype=float)
    rhat, bulk, tail = (np.full(draws.shape[0], np.nan) for _ in range(3))
    valid = _valid(draws, min_chains=1)
    if not valid.any():
        return rhat, bulk, tail
    sample = draws[valid]
    split = _split_chains(sample)
    z = _z_scale(split)
    bulk[valid] = _ess(z)
    flat = sample.reshape(sample.shape[0], -1)
    quantiles = np.asarray(mquantiles(flat, (0.05, 0.95), alphap=1, betap=1, axis=-1))
    tail[valid] = np.minimum(*(_ess(_split_chains((sample <= quantiles[:, i, None, None]).astype(float)))
                               for i in range(2)))
    if draws.shape[-2] >= 2:
        folded = np.abs(split - np.median(split, axis=(-2, -1), keepdims=True))
        rhat_bulk, rhat_tail = _rhat(z), _rhat(_z_scale(folded))
        rhat[valid] = np.where(rhat_tail > rhat_bulk, rhat_tail, rhat_bulk)  # Python's max, as ArviZ
    return rhat, bulk, tail
