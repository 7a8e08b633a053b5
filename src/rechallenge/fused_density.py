r"""The default model's log density and its gradient in one compiled kernel.

At 300 patients the gradient of the PyMC graph of :func:`rechallenge.model.build_model`
costs ~21 µs, most of it fixed per-node overhead of a ~200-node graph (allocation of
every intermediate array), which is what limits refits in simulation studies. For the
model's fast form (Weibull PH without cure fraction, complete covariates, irAE outcomes
aggregated by predictor pattern) this module computes the whole log density — priors,
group effects and both likelihoods — and its gradient in one Numba function, one node of
the graph (:class:`FusedDensity`). :mod:`rechallenge.fused_model` builds the PyMC model
around it; the graph version stays the reference and the two are tested equal (value
and gradient) at random points.

Equations (same as :mod:`rechallenge.model` and :mod:`rechallenge.loglik`)
--------------------------------------------------------------------------
Priors: each coefficient and baseline parameter θ_r has a normal mixture prior
:math:`\log p(θ_r) = \log\sum_m w_{rm} N(θ_r; μ_{rm}, s_{rm}^2)`; group SDs
:math:`σ \sim \mathrm{HalfNormal}(h)`; group deviates :math:`z_g \sim N(0, c_g)` with
:math:`c_g = σ` (centred) or 1 (non-centred) and effects :math:`u_g = z_g σ / c_g`.

PFS2 (Weibull PH, reference median m, shape k, :math:`\log λ_0 = \log m − \log\ln 2 / k`),
with patterns p of identical predictors and :math:`τ_i = (t_i/λ_0)^k`:

.. math::

    \ell = D(\log k − k\log λ_0) + (k−1)\sum_i d_i\log t_i + β^\top\sum_i d_i x_i
          + \sum_g D_g u_g − \sum_p e^{η_p} W_p,\qquad W_p = \sum_{i∈p} τ_i .

With :math:`k\log(t_i/λ_0) = k(\log t_i − \log m) + \log\ln 2`:
:math:`∂H/∂\log m = −kH` and :math:`∂H/∂\log k = k\sum_p e^{η_p}(V_p − W_p\log m)`,
:math:`V_p = \sum_{i∈p} τ_i \log t_i`, where :math:`H = \sum_p e^{η_p} W_p`.

irAE (sequential logit, counts :math:`n_0, n_1, n_2` per pattern, :math:`f = a + ζ`,
:math:`s = b + ζ`, :math:`N = n_0 + n_1 + n_2`):

.. math::

    \ell = N\log σ(f) − n_0 f + (n_1 + n_2)\log σ(s) − n_1 s,\qquad
    ∂\ell/∂f = Nσ(−f) − n_0,\quad ∂\ell/∂s = (n_1 + n_2)σ(−s) − n_1 .
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

from .loglik import LOG_LOG2

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)

#: Parameter inputs of the kernel, in order. Scalars are 0-d arrays. Absent parts of a
#: specification are empty vectors (coefficients, group deviates) or constants.
PARAMETERS = ("log_hr", "log_median", "log_shape", "log_or", "irae_a_any", "irae_b_severe",
              "sigma_tumour", "tumour_effect_z", "sigma_centre", "centre_effect_z",
              "sigma_tumour_irae", "tumour_effect_irae_z", "sigma_organ", "organ_effect_z")
#: Data inputs, in order (constants of the prior, then cohort arrays named as in
#: :func:`rechallenge.model.model_inputs`).
DATA = ("prior_mean", "prior_precision", "prior_log_norm", "group_sd_scale",
        "tumour_centred", "centre_centred", "tumour_irae_centred", "organ_centred",
        "events", "events_x_pfs2", "events_log_time", "log_time", "patient_pfs2_pattern",
        "pfs2_pattern_x_pfs2", "pfs2_pattern_tumour_idx", "pfs2_pattern_centre_idx",
        "events_tumour", "events_centre",
        "pattern_x_irae", "pattern_tumour_idx", "pattern_organ_idx", "pattern_counts")


@numba.njit(cache=True)
def _mixture(x, mean, precision, log_norm):
    """``(log p(x), d log p / dx)`` of a normal mixture; ``log_norm = log w − log s − ½log 2π``."""
    top = -np.inf
    for c in range(mean.shape[0]):
        d = x - mean[c]
        top = max(top, log_norm[c] - 0.5 * d * d * precision[c])
    total = 0.0
    slope = 0.0
    for c in range(mean.shape[0]):
        d = x - mean[c]
        e = math.exp(log_norm[c] - 0.5 * d * d * precision[c] - top)
        total += e
        slope -= e * d * precision[c]
    return top + math.log(total), slope / total


@numba.njit(cache=True)
def _logit_stage(x, n_at_risk, n_stop):
    """One stage of the sequential logit: ``(n log σ(x) − n_stop x, d/dx)``.

    ``n_at_risk`` patients reach the stage and ``n_stop`` of them stop there, so the
    term is ``(n − n_stop) log σ(x) + n_stop log σ(−x)``; ``d/dx = n σ(−x) − n_stop``.
    One exponential and one logarithm: with ``e = exp(−|x|) ≤ 1``,
    ``log σ(x) = min(x, 0) − log(1 + e)`` and ``σ(−x) = e/(1+e)`` (x ≥ 0) or ``1/(1+e)``
    (``log(1 + e)`` instead of ``log1p(e)``: absolute error < 1e-16, 3× cheaper).
    """
    e = math.exp(-abs(x))
    log_sig = min(x, 0.0) - math.log(1.0 + e)
    sig_minus = e / (1.0 + e) if x >= 0.0 else 1.0 / (1.0 + e)
    return n_at_risk * log_sig - n_stop * x, n_at_risk * sig_minus - n_stop


@numba.njit(cache=True)
def _group_prior(z, sigma, centred, scale):
    """Effects and prior of one group: ``(u, du/dz, du/dσ, log p, d/dz, d/dσ)``.

    ``z ~ N(0, c²)``, ``c = σ`` (centred) or 1; ``u = zσ/c``; ``σ ~ HalfNormal(scale)``
    (its log-transform Jacobian is added by PyMC). Empty ``z``: no group, no prior.
    """
    n = z.shape[0]
    u = np.empty(n)
    du_dz = np.empty(n)
    du_ds = np.empty(n)
    g_z = np.empty(n)
    if n == 0:
        return u, du_dz, du_ds, 0.0, g_z, 0.0
    logp = LOG_2 - HALF_LOG_2PI - math.log(scale) - 0.5 * (sigma / scale) ** 2
    g_s = -sigma / scale ** 2
    for j in range(n):
        if centred[j] != 0.0:
            u[j] = z[j]
            du_dz[j] = 1.0
            du_ds[j] = 0.0
            logp += -HALF_LOG_2PI - math.log(sigma) - 0.5 * (z[j] / sigma) ** 2
            g_z[j] = -z[j] / sigma ** 2
            g_s += z[j] * z[j] / sigma ** 3 - 1.0 / sigma
        else:
            u[j] = z[j] * sigma
            du_dz[j] = sigma
            du_ds[j] = z[j]
            logp += -HALF_LOG_2PI - 0.5 * z[j] * z[j]
            g_z[j] = -z[j]
    return u, du_dz, du_ds, logp, g_z, g_s


@numba.njit(cache=True)
def _chain(g_u, du_dz, du_ds, g_z, g_s):
    """Add the likelihood gradient with respect to effects to that of (z, σ)."""
    for j in range(g_u.shape[0]):
        g_z[j] += g_u[j] * du_dz[j]
        g_s += g_u[j] * du_ds[j]
    return g_z, g_s


@numba.njit(cache=True)
def _scalar(value):
    out = np.empty(())
    out[()] = value
    return out


@numba.njit(cache=True)
def joint_density(log_hr, log_median, log_shape, log_or, irae_a_any, irae_b_severe,
                  sigma_tumour, tumour_effect_z, sigma_centre, centre_effect_z,
                  sigma_tumour_irae, tumour_effect_irae_z, sigma_organ, organ_effect_z,
                  prior_mean, prior_precision, prior_log_norm, group_sd_scale,
                  tumour_centred, centre_centred, tumour_irae_centred, organ_centred,
                  events, events_x_pfs2, events_log_time, log_time, patient_pfs2_pattern,
                  pfs2_pattern_x_pfs2, pfs2_pattern_tumour_idx, pfs2_pattern_centre_idx,
                  events_tumour, events_centre,
                  pattern_x_irae, pattern_tumour_idx, pattern_organ_idx, pattern_counts):
    """Log density and its gradient with respect to each parameter (see module docstring).

    Returns a tuple: the log density (0-d array) followed by one gradient per entry of
    :data:`PARAMETERS`, each shaped like its parameter. Prior rows: log-HRs, log median,
    log shape, then (with an irAE part) log-ORs, ``a``, ``b``.
    """
    n_hr = log_hr.shape[0]
    n_or = log_or.shape[0]
    has_irae = prior_mean.shape[0] > n_hr + 2
    lm = log_median[()]
    ls = log_shape[()]
    a = irae_a_any[()]
    b = irae_b_severe[()]

    # ---- coefficient and baseline priors ------------------------------------------
    logp = 0.0
    g_hr = np.empty(n_hr)
    g_or = np.empty(n_or)
    for j in range(n_hr):
        lp, g_hr[j] = _mixture(log_hr[j], prior_mean[j], prior_precision[j], prior_log_norm[j])
        logp += lp
    lp, g_lm = _mixture(lm, prior_mean[n_hr], prior_precision[n_hr], prior_log_norm[n_hr])
    logp += lp
    lp, g_ls = _mixture(ls, prior_mean[n_hr + 1], prior_precision[n_hr + 1], prior_log_norm[n_hr + 1])
    logp += lp
    g_a = 0.0
    g_b = 0.0
    if has_irae:
        r = n_hr + 2
        for j in range(n_or):
            lp, g_or[j] = _mixture(log_or[j], prior_mean[r + j], prior_precision[r + j], prior_log_norm[r + j])
            logp += lp
        r += n_or
        lp, g_a = _mixture(a, prior_mean[r], prior_precision[r], prior_log_norm[r])
        logp += lp
        lp, g_b = _mixture(b, prior_mean[r + 1], prior_precision[r + 1], prior_log_norm[r + 1])
        logp += lp

    # ---- group effects ---------------------------------------------------------
    u_t, dz_t, ds_t, lp, gz_t, gs_t = _group_prior(tumour_effect_z, sigma_tumour[()], tumour_centred,
                                                   group_sd_scale[0])
    logp += lp
    u_c, dz_c, ds_c, lp, gz_c, gs_c = _group_prior(centre_effect_z, sigma_centre[()], centre_centred,
                                                   group_sd_scale[1])
    logp += lp
    u_ti, dz_ti, ds_ti, lp, gz_ti, gs_ti = _group_prior(tumour_effect_irae_z, sigma_tumour_irae[()],
                                                        tumour_irae_centred, group_sd_scale[2])
    logp += lp
    u_o, dz_o, ds_o, lp, gz_o, gs_o = _group_prior(organ_effect_z, sigma_organ[()], organ_centred,
                                                   group_sd_scale[3])
    logp += lp

    # ---- PFS2, Weibull PH by predictor pattern --------------------------------------
    k = math.exp(ls)
    d_total = events[()]
    logp += d_total * (ls + LOG_LOG2 - k * lm) + (k - 1.0) * events_log_time[()]
    g_lm += -k * d_total
    g_ls += d_total * (1.0 - k * lm) + k * events_log_time[()]
    for j in range(n_hr):
        logp += events_x_pfs2[j] * log_hr[j]
        g_hr[j] += events_x_pfs2[j]
    g_ut = np.zeros(u_t.shape[0])
    g_uc = np.zeros(u_c.shape[0])
    for g in range(u_t.shape[0]):
        logp += events_tumour[g] * u_t[g]
        g_ut[g] = events_tumour[g]
    for g in range(u_c.shape[0]):
        logp += events_centre[g] * u_c[g]
        g_uc[g] = events_centre[g]
    n_patterns = pfs2_pattern_x_pfs2.shape[0]
    w = np.zeros(n_patterns)
    v = np.zeros(n_patterns)
    shift = LOG_LOG2 - k * lm
    for i in range(log_time.shape[0]):
        tau = math.exp(k * log_time[i] + shift)
        p = patient_pfs2_pattern[i]
        w[p] += tau
        v[p] += tau * log_time[i]
    cum_total = 0.0
    cum_log_time = 0.0
    for p in range(n_patterns):
        eta = 0.0
        for j in range(n_hr):
            eta += pfs2_pattern_x_pfs2[p, j] * log_hr[j]
        if u_t.shape[0]:
            eta += u_t[pfs2_pattern_tumour_idx[p]]
        if u_c.shape[0]:
            eta += u_c[pfs2_pattern_centre_idx[p]]
        e = math.exp(eta)
        cum = e * w[p]
        cum_total += cum
        cum_log_time += e * v[p]
        for j in range(n_hr):
            g_hr[j] -= cum * pfs2_pattern_x_pfs2[p, j]
        if u_t.shape[0]:
            g_ut[pfs2_pattern_tumour_idx[p]] -= cum
        if u_c.shape[0]:
            g_uc[pfs2_pattern_centre_idx[p]] -= cum
    logp -= cum_total
    g_lm += k * cum_total
    g_ls -= k * (cum_log_time - lm * cum_total)

    # ---- irAE recurrence, sequential logit by predictor pattern ------------------------
    g_uti = np.zeros(u_ti.shape[0])
    g_uo = np.zeros(u_o.shape[0])
    if has_irae:
        for p in range(pattern_counts.shape[0]):
            zeta = 0.0
            for j in range(n_or):
                zeta += pattern_x_irae[p, j] * log_or[j]
            if u_ti.shape[0]:
                zeta += u_ti[pattern_tumour_idx[p]]
            if u_o.shape[0]:
                zeta += u_o[pattern_organ_idx[p]]
            n0 = pattern_counts[p, 0]
            n1 = pattern_counts[p, 1]
            n2 = pattern_counts[p, 2]
            lp_f, g_f = _logit_stage(a + zeta, n0 + n1 + n2, n0)
            lp_s, g_sv = _logit_stage(b + zeta, n1 + n2, n1)
            logp += lp_f + lp_s
            g_a += g_f
            g_b += g_sv
            g_zeta = g_f + g_sv
            for j in range(n_or):
                g_or[j] += g_zeta * pattern_x_irae[p, j]
            if u_ti.shape[0]:
                g_uti[pattern_tumour_idx[p]] += g_zeta
            if u_o.shape[0]:
                g_uo[pattern_organ_idx[p]] += g_zeta

    gz_t, gs_t = _chain(g_ut, dz_t, ds_t, gz_t, gs_t)
    gz_c, gs_c = _chain(g_uc, dz_c, ds_c, gz_c, gs_c)
    gz_ti, gs_ti = _chain(g_uti, dz_ti, ds_ti, gz_ti, gs_ti)
    gz_o, gs_o = _chain(g_uo, dz_o, ds_o, gz_o, gs_o)
    return (_scalar(logp), g_hr, _scalar(g_lm), _scalar(g_ls), g_or, _scalar(g_a), _scalar(g_b),
            _scalar(gs_t), gz_t, _scalar(gs_c), gz_c, _scalar(gs_ti), gz_ti, _scalar(gs_o), gz_o)


class FusedDensity(Op):
    """PyTensor Op: inputs :data:`PARAMETERS` then :data:`DATA`; outputs the log density
    followed by its gradient with respect to each parameter.

    ``grad`` reuses the Op's own gradient outputs (the forward node and the one in the
    gradient graph are merged, so one kernel call gives the value and the gradient).
    """

    __props__ = ()

    def make_node(self, *inputs):
        if len(inputs) != len(PARAMETERS) + len(DATA):
            raise TypeError(f"FusedDensity takes {len(PARAMETERS) + len(DATA)} inputs, got {len(inputs)}")
        inputs = [pt.as_tensor_variable(x) for x in inputs]
        params = inputs[:len(PARAMETERS)]
        outputs = [pt.dscalar()] + [p.type() for p in params]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):
        for storage, value in zip(output_storage, joint_density(*inputs)):
            storage[0] = value

    def connection_pattern(self, node):
        n_params = len(PARAMETERS)
        return [[i < n_params] + [False] * n_params for i in range(len(node.inputs))]

    def grad(self, inputs, output_grads):
        outputs = self(*inputs)
        g = output_grads[0]
        n_params = len(PARAMETERS)
        return ([g * outputs[1 + i] for i in range(n_params)]
                + [disconnected_type() for _ in inputs[n_params:]])


fused_density = FusedDensity()


@register_funcify_default_op_cache_key(FusedDensity)
def _numba_fused_density(op, node=None, **kwargs):
    """The Numba implementation: the kernel itself."""
    return joint_density
