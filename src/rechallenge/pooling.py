r"""Bayesian random-effects meta-analysis by numerical integration over :math:`\tau`.

The normal-normal hierarchical model on the log scale (log hazard ratio, log odds, ...):

.. math::
    y_i \mid \theta_i \sim N(\theta_i, s_i^2), \qquad
    \theta_i \mid \mu, \tau \sim N(\mu, \tau^2), \qquad
    \mu \sim N(m_0, s_0^2), \qquad \tau \sim \mathrm{HalfNormal}(\text{scale}),

with known standard errors :math:`s_i`. Given :math:`\tau` every quantity is Gaussian,
so the joint posterior is computed exactly up to a one-dimensional quadrature over
:math:`\tau` on a grid: the approach of the R package bayesmeta (Röver 2020, J Stat
Softw 93(6):1-51, doi:10.18637/jss.v093.i06). There is no MCMC and no Monte-Carlo error;
posteriors are mixtures of normals over the :math:`\tau` grid, then compressed to at
most three components (:meth:`rechallenge.mixture.NormalMixture.compress`).

References
----------
Röver C (2020). Bayesian random-effects meta-analysis using the bayesmeta R package.
J Stat Softw 93(6). Schmidli H et al. (2014). Robust meta-analytic-predictive priors in
clinical trials with historical control information. Biometrics 70:1023-1032.
Neuenschwander B, Weber S, Schmidli H, O'Hagan A (2020). Predictively consistent prior
effective sample sizes. Biometrics 76:578-587.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rechallenge.mixture import NormalMixture

_GRID_SIZE = 600                 # initial tau grid over the non-negligible posterior
_MAX_CELL_MASS = 2e-3            # cells holding more posterior mass are bisected ...
_MAX_CELL_LOG_RATIO = 0.1        # ... and so are cells where log density changes more
_COARSE_SIZE = 401               # exploratory grid that locates the posterior
_LOG_NEGLIGIBLE = np.log(1e-12)  # density ratio to the mode treated as zero


@dataclass(frozen=True, eq=False)
class MetaAnalysis:
    r"""Result of :func:`random_effects`.

    Attributes
    ----------
    labels, y, se, n_studies
        The studies (log-scale estimates and standard errors).
    tau_prior_scale, tau_fixed
        Half-normal prior scale of :math:`\tau` (``None`` when :math:`\tau` is fixed)
        and the fixed :math:`\tau` (``None`` when it has a prior).
    mu_prior_mean, mu_prior_sd
        Normal prior of :math:`\mu`.
    mu
        Posterior of the mean effect, :math:`p(\mu \mid y) = \int N(\mu; M(\tau), V(\tau))
        \, p(\tau \mid y)\, d\tau`, compressed to at most three normals.
    tau_median, tau_interval
        Posterior median and central 95% interval of :math:`\tau` (the fixed value
        when :math:`\tau` is fixed; ``None`` with one study).
    predictive
        Meta-analytic-predictive (MAP) prior of the true effect of a new cohort,
        :math:`\int N(\theta_{new}; M(\tau), V(\tau) + \tau^2)\, p(\tau \mid y)\, d\tau`.
    shrunken
        Posterior means :math:`E(\theta_i \mid y)` of the study effects.
    """

    labels: tuple[str, ...]
    y: np.ndarray
    se: np.ndarray
    tau_prior_scale: float | None
    tau_fixed: float | None
    mu_prior_mean: float
    mu_prior_sd: float
    mu: NormalMixture
    tau_median: float | None
    tau_interval: tuple[float, float] | None
    predictive: NormalMixture
    shrunken: np.ndarray
    n_studies: int


def _vector(name: str, values: Any) -> np.ndarray:
    """A finite, read-only 1-D float copy of ``values``; ``ValueError`` otherwise."""
    try:
        arr = np.array(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} must be finite, element {bad} is {arr[bad]}")
    arr.setflags(write=False)
    return arr


def _scalar(name: str, value: Any, *, positive: bool = False, nonneg: bool = False) -> float:
    """``value`` as a finite float, checked to be > 0 or >= 0 when asked."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(out) or (positive and out <= 0) or (nonneg and out < 0):
        need = "> 0" if positive else ">= 0" if nonneg else "finite"
        raise ValueError(f"{name} must be finite and {need}, got {value!r}")
    return out


def _studies(y: Any, se: Any, labels: Sequence[str] | None
             ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Validate the study data: equal lengths, finite values, ``se > 0``, one label each."""
    y, se = _vector("y", y), _vector("se", se)
    if y.size != se.size:
        raise ValueError(f"y and se differ in length ({y.size} vs {se.size})")
    if np.any(se <= 0):
        raise ValueError(f"se must be > 0, study {int(np.argmin(se))} has se {se.min()}")
    labels = tuple(f"study {i + 1}" for i in range(y.size)) if labels is None else \
        tuple(str(lab) for lab in labels)
    if len(labels) != y.size:
        raise ValueError(f"labels has {len(labels)} entries for {y.size} studies")
    return y, se, labels


def _conditional_mu(y: np.ndarray, se: np.ndarray, tau: np.ndarray, m0: float, s0: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean :math:`M(\tau)` and variance :math:`V(\tau)` of :math:`\mu \mid y, \tau`.

    Conjugate update with :math:`v_i = s_i^2 + \tau^2`:

    .. math:: V(\tau)^{-1} = s_0^{-2} + \sum_i v_i^{-1}, \qquad
              M(\tau) = V(\tau)\,\Big(m_0 s_0^{-2} + \sum_i y_i v_i^{-1}\Big).
    """
    v = se**2 + np.asarray(tau, dtype=float)[..., None] ** 2
    prec = 1.0 / s0**2 + np.sum(1.0 / v, axis=-1)
    return (m0 / s0**2 + np.sum(y / v, axis=-1)) / prec, 1.0 / prec


def _log_marginal(y: np.ndarray, se: np.ndarray, tau: np.ndarray, m0: float, s0: float
                  ) -> np.ndarray:
    r"""Log marginal likelihood :math:`\log p(y \mid \tau)`, with :math:`\mu` integrated out.

    Marginally :math:`y \mid \tau \sim N(m_0 \mathbf 1, \operatorname{diag}(v) + s_0^2
    \mathbf 1 \mathbf 1^\top)`, :math:`v_i = s_i^2 + \tau^2`. Completing the square in
    :math:`\mu` gives, with :math:`M, V` from :func:`_conditional_mu`,

    .. math::
        \log p(y \mid \tau) = -\tfrac n2 \log 2\pi - \tfrac12 \sum_i \log v_i
            - \log s_0 + \tfrac12 \log V
            - \tfrac12 \Big[\sum_i \frac{(y_i - M)^2}{v_i} + \frac{(M - m_0)^2}{s_0^2}\Big],

    the bracket being :math:`\sum_i y_i^2/v_i + m_0^2/s_0^2 - M^2/V` written without
    cancellation.
    """
    v = se**2 + np.asarray(tau, dtype=float)[..., None] ** 2
    mean, var = _conditional_mu(y, se, tau, m0, s0)
    quad = np.sum((y - mean[..., None]) ** 2 / v, axis=-1) + (mean - m0) ** 2 / s0**2
    return (-0.5 * y.size * np.log(2 * np.pi) - 0.5 * np.sum(np.log(v), axis=-1)
            - np.log(s0) + 0.5 * np.log(var) - 0.5 * quad)


def _tau_range(log_post: Callable[[np.ndarray], np.ndarray], scale: float
               ) -> tuple[float, float]:
    r"""Interval of :math:`\tau` outside which the posterior density is negligible.

    A 401-point grid from 0 to the prior's 0.9999 quantile is doubled until the density
    at its end is below :math:`10^{-12}` of the mode; the interval then spans the points
    above that ratio, plus one step each side.
    """
    upper = scale * 3.890591886  # HalfNormal 0.9999 quantile = Phi^{-1}(0.99995) * scale
    for _ in range(60):
        coarse = np.linspace(0.0, upper, _COARSE_SIZE)
        lp = log_post(coarse)
        if lp[-1] - lp.max() < _LOG_NEGLIGIBLE:
            break
        upper *= 2.0
    keep = np.flatnonzero(lp - lp.max() >= _LOG_NEGLIGIBLE)
    return coarse[max(keep[0] - 1, 0)], coarse[min(keep[-1] + 1, coarse.size - 1)]


def _tau_posterior(y: np.ndarray, se: np.ndarray, scale: float, m0: float, s0: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Grid, trapezoid weights and normalised density of :math:`p(\tau \mid y)`.

    :math:`p(\tau \mid y) \propto p(y \mid \tau)\, \exp(-\tau^2 / 2\,\text{scale}^2)`.
    An equispaced grid of 600 points covers :func:`_tau_range`; cells holding more than
    0.2% of the posterior mass, or across which :math:`\log p` changes by more than 0.1,
    are bisected until none is left (this resolves posteriors piled up near
    :math:`\tau = 0` and steep flanks; typically 1000-1500 points result, and the
    summaries are stable to about 1e-5 relative). Trapezoid weights
    :math:`\omega_j = f_j (\tau_{j+1} - \tau_{j-1})/2` are normalised to sum to one.
    """
    def log_post(tau: np.ndarray) -> np.ndarray:
        return _log_marginal(y, se, tau, m0, s0) - 0.5 * (tau / scale) ** 2

    tau = np.linspace(*_tau_range(log_post, scale), _GRID_SIZE)
    lp = log_post(tau)
    for _ in range(40):
        dens = np.exp(lp - lp.max())
        mass = 0.5 * (dens[1:] + dens[:-1]) * np.diff(tau)
        steep = (np.abs(np.diff(lp)) > _MAX_CELL_LOG_RATIO) & (mass > 1e-9 * mass.sum())
        split = (mass > _MAX_CELL_MASS * mass.sum()) | steep
        if not split.any():
            break
        mid = 0.5 * (tau[1:] + tau[:-1])[split]
        order = np.argsort(np.concatenate([tau, mid]), kind="stable")
        tau, lp = np.concatenate([tau, mid])[order], np.concatenate([lp, log_post(mid)])[order]
    dens = np.exp(lp - lp.max())
    padded = np.concatenate([tau[:1], tau, tau[-1:]])
    weights = dens * (padded[2:] - padded[:-2]) / 2
    total = weights.sum()
    return tau, weights / total, dens / total


def _grid_quantiles(tau: np.ndarray, dens: np.ndarray, probs: Sequence[float]) -> np.ndarray:
    r"""Quantiles of the trapezoid-integrated distribution function on the grid.

    Within a cell the density is linear (as in the trapezoid rule), so the distribution
    function is quadratic, :math:`F(\tau_j + x) = F_j + f_j x + (f_{j+1} - f_j) x^2 / 2h_j`,
    and is inverted exactly.
    """
    h = np.diff(tau)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * h)])
    p = np.asarray(probs, dtype=float) * cdf[-1]
    j = np.clip(np.searchsorted(cdf, p, side="right") - 1, 0, h.size - 1)
    f0, slope, gap = dens[j], (dens[j + 1] - dens[j]) / h[j], p - cdf[j]
    x = 2 * gap / (f0 + np.sqrt(np.maximum(f0**2 + 2 * slope * gap, 0.0)))
    return tau[j] + np.minimum(x, h[j])


def random_effects(y: Sequence[float] | np.ndarray, se: Sequence[float] | np.ndarray, *,
                   labels: Sequence[str] | None = None, tau_prior_scale: float = 0.5,
                   tau_fixed: float | None = None, mu_prior_mean: float = 0.0,
                   mu_prior_sd: float = 4.0) -> MetaAnalysis:
    r"""Bayesian normal-normal random-effects meta-analysis (bayesmeta-style quadrature).

    Parameters
    ----------
    y, se
        Study estimates and standard errors on the log scale (equal length, finite,
        ``se > 0``).
    labels
        Study names (default ``"study 1"``, ...), one per study.
    tau_prior_scale
        Scale of the half-normal prior of the between-study sd :math:`\tau` (> 0).
    tau_fixed
        If given (>= 0), :math:`\tau` is fixed: no integration, :math:`\mu \mid y \sim
        N(M, V)` exactly and the predictive is :math:`N(M, V + \tau^2)`.
    mu_prior_mean, mu_prior_sd
        Normal prior of :math:`\mu`; a large sd (e.g. ``1e6``) is effectively flat.

    Returns
    -------
    MetaAnalysis
        With :math:`\omega_j` the normalised posterior weights on the :math:`\tau` grid,
        :math:`p(\mu \mid y) \approx \sum_j \omega_j N(M(\tau_j), V(\tau_j))`, the
        predictive :math:`\sum_j \omega_j N(M(\tau_j), V(\tau_j) + \tau_j^2)` (both
        compressed to <= 3 components; the first two moments are kept) and
        :math:`E(\theta_i \mid y) = \sum_j \omega_j [B_{ij} M(\tau_j) + (1 - B_{ij}) y_i]`,
        :math:`B_{ij} = s_i^2/(s_i^2 + \tau_j^2)`.

    Notes
    -----
    With a single study and no fixed :math:`\tau`, heterogeneity cannot be learned, so
    the result is that study's estimate itself: ``mu = predictive = N(y_1, se_1^2)``
    (neither prior is applied) and the :math:`\tau` summaries are ``None``. The extra
    uncertainty of transferring one study to a new cohort must then be carried by an
    explicit discount, e.g. :func:`robust_mixture`.
    """
    y, se, labels = _studies(y, se, labels)
    m0 = _scalar("mu_prior_mean", mu_prior_mean)
    s0 = _scalar("mu_prior_sd", mu_prior_sd, positive=True)
    common = dict(labels=labels, y=y, se=se, mu_prior_mean=m0, mu_prior_sd=s0,
                  n_studies=int(y.size))
    if tau_fixed is not None:
        fixed = _scalar("tau_fixed", tau_fixed, nonneg=True)
        tau, weights, scale = np.array([fixed]), np.array([1.0]), None
        tau_median, tau_interval = fixed, (fixed, fixed)
    elif y.size == 1:
        single = NormalMixture.normal(float(y[0]), float(se[0]))
        shrunken = y.copy()
        shrunken.setflags(write=False)
        return MetaAnalysis(tau_prior_scale=_scalar("tau_prior_scale", tau_prior_scale,
                                                    positive=True),
                            tau_fixed=None, mu=single, tau_median=None, tau_interval=None,
                            predictive=single, shrunken=shrunken, **common)
    else:
        fixed, scale = None, _scalar("tau_prior_scale", tau_prior_scale, positive=True)
        tau, weights, dens = _tau_posterior(y, se, scale, m0, s0)
        tau_median, lo, hi = (float(t) for t in _grid_quantiles(tau, dens, [0.5, 0.025, 0.975]))
        tau_interval = (lo, hi)
    mean, var = _conditional_mu(y, se, tau, m0, s0)
    mu = NormalMixture(weights, mean, np.sqrt(var)).compress(3)
    predictive = NormalMixture(weights, mean, np.sqrt(var + tau**2)).compress(3)
    shrink = se**2 / (se**2 + tau[:, None] ** 2)
    shrunken = weights @ (shrink * mean[:, None] + (1 - shrink) * y)
    shrunken.setflags(write=False)
    return MetaAnalysis(tau_prior_scale=scale, tau_fixed=fixed, mu=mu, tau_median=tau_median,
                        tau_interval=tau_interval, predictive=predictive, shrunken=shrunken,
                        **common)


def robust_mixture(prior: NormalMixture, weight: float, *, vague_mean: float = 0.0,
                   vague_sd: float = 2.0) -> NormalMixture:
    r"""Robustify a prior by mixing in a vague component (Schmidli et al. 2014).

    .. math:: p_R(\theta) = (1 - w)\, p(\theta) + w\, N(\theta;\ \text{vague\_mean},
              \text{vague\_sd}^2), \qquad 0 \le w < 1.

    ``weight`` 0 returns ``prior`` itself. ``ValueError`` if ``weight`` is outside
    [0, 1) or ``vague_sd`` is not > 0.
    """
    if not isinstance(prior, NormalMixture):
        raise ValueError(f"prior must be a NormalMixture, got {type(prior).__name__}")
    w = _scalar("weight", weight)
    if not 0 <= w < 1:
        raise ValueError(f"robust weight must be in [0, 1), got {weight!r}")
    m = _scalar("vague_mean", vague_mean)
    s = _scalar("vague_sd", vague_sd, positive=True)
    if w == 0:
        return prior
    return NormalMixture(np.append((1 - w) * prior.weights, w), np.append(prior.means, m),
                         np.append(prior.sds, s))


def _local_information(prior: NormalMixture, theta: np.ndarray) -> np.ndarray:
    r"""Prior local information :math:`i_p(\theta) = -\frac{d^2}{d\theta^2} \log p(\theta)`.

    With responsibilities :math:`r_k(\theta) \propto w_k \phi(\theta; m_k, s_k^2)` and
    :math:`a_k = -(\theta - m_k)/s_k^2`:
    :math:`i_p = \sum_k r_k / s_k^2 - \big[\sum_k r_k a_k^2 - (\sum_k r_k a_k)^2\big]`.
    """
    z = (theta[:, None] - prior.means) / prior.sds
    with np.errstate(divide="ignore"):
        logd = np.log(prior.weights / prior.sds) - 0.5 * z**2
    r = np.exp(logd - logd.max(axis=1, keepdims=True))
    r /= r.sum(axis=1, keepdims=True)
    a = -z / prior.sds
    spread = np.sum(r * a**2, axis=1) - np.sum(r * a, axis=1) ** 2
    return np.sum(r / prior.sds**2, axis=1) - spread


def effective_sample_size(prior: NormalMixture, *, unit_sd: float,
                          method: str = "moment") -> float:
    r"""Prior effective sample size (ESS) for a normal likelihood with unit sd :math:`\sigma`.

    ``"moment"`` (RBesT's moment method; Neuenschwander et al. 2020):
    :math:`\mathrm{ESS} = \sigma^2 / \operatorname{Var}(\theta)`.

    ``"elir"``, the expected local-information ratio (Neuenschwander, Weber, Schmidli &
    O'Hagan 2020, Biometrics 76:578-587): with Fisher information per unit
    :math:`i_F = 1/\sigma^2`,

    .. math:: \mathrm{ESS}_{ELIR} = E_p\big[i_p(\theta)\big] / i_F, \qquad
              i_p(\theta) = -\frac{d^2}{d\theta^2} \log p(\theta),

    the expectation by trapezoid quadrature over the union of grids
    :math:`m_k + s_k z`, :math:`z \in [-10, 10]`. Integrating by parts,
    :math:`E_p[i_p] = E_p[(\frac{d}{d\theta} \log p)^2] > 0`. For one normal
    :math:`N(m, s^2)` both methods give :math:`\sigma^2/s^2`.

    Units: for a log hazard ratio with 1:1 allocation a ``unit_sd`` of 2 makes the ESS
    a number of events (:math:`\operatorname{Var}(\log HR) \approx 4/d`); for a logit
    probability :math:`p` the ``unit_sd`` is :math:`1/\sqrt{p(1-p)}` and the ESS is a
    number of patients.
    """
    if not isinstance(prior, NormalMixture):
        raise ValueError(f"prior must be a NormalMixture, got {type(prior).__name__}")
    sigma = _scalar("unit_sd", unit_sd, positive=True)
    if method == "moment":
        return sigma**2 / prior.var
    if method != "elir":
        raise ValueError(f"method must be 'moment' or 'elir', got {method!r}")
    used = prior.weights > 0
    z = np.linspace(-10.0, 10.0, max(51, 20001 // int(used.sum())))  # >= 20000 nodes
    theta = np.unique((prior.means[used, None] + prior.sds[used, None] * z).ravel())
    blocks = np.array_split(theta, max(1, theta.size * prior.n_components // 2_000_000))
    integrand = prior.pdf(theta) * np.concatenate([_local_information(prior, b) for b in blocks])
    expected = float(np.sum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(theta)))
    return sigma**2 * expected
