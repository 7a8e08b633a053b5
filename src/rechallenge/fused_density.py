r"""The default model's log density and its gradient in one compiled kernel.

At 300 patients the gradient of the PyMC graph of :func:`rechallenge.model.build_model`
costs ~21 µs, most of it fixed per-node overhead of a ~200-node graph (allocation of
every intermediate array), which is what limits refits in simulation studies. For the
model's fast form (Weibull PH without cure fraction, complete covariates, irAE outcomes
aggregated by predictor pattern) this module computes the whole log density — priors,
group effects and both likelihoods — and its gradient in one Numba function, one node of
the graph (:class:`FusedDensity`), as a function of ONE vector of all free parameters
(unconstrained, in the sampling parameterisation below): the graph nutpie compiles around
it is then a handful of nodes (each further node costs array allocations at every
leapfrog step). :mod:`rechallenge.fused_model` builds the PyMC model around it; the graph
version stays the reference, and the tests compare the two at random points.

Sampling parameterisation
-------------------------
The kernel samples the reference model's posterior in other coordinates (an exact
change of variables; the fused model's deterministics map back, and the tests check the
density against the reference's plus the log-Jacobian). For each group (levels g,
half-normal scale h, information :math:`I_g`, intercept weights :math:`w_g`, both from
:func:`rechallenge.fused_model.sampling_inputs`):

.. math::

    s \sim N(0, h^2),\quad σ = |s|,\quad c_g = \sqrt{1 + s^2 I_g},\quad
    z_g \sim N(0, c_g^2),\quad u_g = s z_g / c_g .

* **Folded SD.** s ranges over the real line and the density of σ = |s| is the
  half-normal, so there is no log transform whose Jacobian becomes stiff as σ grows; the
  two signs of (s, z) are the same model point (the log density is the reference's
  minus log 2 per group).
* **Information-scaled deviates.** Given s, the likelihood makes u_g's posterior
  precision about :math:`I_g + 1/s^2`, so :math:`z_g` has conditional variance about 1
  whatever s is: non-centred (:math:`z ≈ u/s`) where :math:`s^2 I_g ≪ 1`, centred
  (:math:`z ≈ u\sqrt{I_g}`) where :math:`s^2 I_g ≫ 1`, the interpolation chosen per
  level by the data (Papaspiliopoulos, Roberts & Sköld 2007; Gorinova, Moore & Hoffman
  2020). This replaces the reference model's all-or-nothing centring per group.
* **Centred intercepts.** With :math:`S = \bar x^\top β + \sum_g w_g u_g` (event-weighted
  means for PFS2, patient-weighted for irAE), the vector holds
  :math:`\log m' = \log m − S_{PFS2}/k` and :math:`a' = a + S_{irAE}`,
  :math:`b' = b + S_{irAE}` (Jacobian 1), so the intercepts no longer trade off
  against the coefficients and the mean of the group effects.

At 300 patients (24 cohorts) this took the sampler from ~15 to ~10 leapfrog steps per
draw and doubled the smallest bulk ESS (benchmarks/RESULTS.md, 2026-11-22).

Equations (same as :mod:`rechallenge.model` and :mod:`rechallenge.loglik`)
--------------------------------------------------------------------------
Priors: each coefficient and baseline parameter θ_r has a normal mixture prior
:math:`\log p(θ_r) = \log\sum_m w_{rm} N(θ_r; μ_{rm}, s_{rm}^2)`; group SDs
:math:`σ \sim \mathrm{HalfNormal}(h)` and effects :math:`u_g \sim N(0, σ^2)`, in the
coordinates above.

PFS2 (Weibull PH, reference median m, shape k, :math:`\log λ_0 = \log m − \log\ln 2 / k`),
with patterns p of identical predictors and :math:`τ_i = (t_i/λ_0)^k`:

.. math::

    \ell = D(\log k − k\log λ_0) + (k−1)\sum_i d_i\log t_i + β^\top\sum_i d_i x_i
          + \sum_g D_g u_g − \sum_p e^{η_p} W_p,\qquad W_p = \sum_{i∈p} τ_i .

With :math:`k\log(t_i/λ_0) = k(\log t_i − \log m) + \log\ln 2`:
:math:`∂H/∂\log m = −kH` and :math:`∂H/∂\log k = k\sum_p e^{η_p}(V_p − W_p\log m)`,
:math:`V_p = \sum_{i∈p} τ_i \log t_i`, where :math:`H = \sum_p e^{η_p} W_p`.

irAE (sequential logit, counts :math:`n_0, n_1, n_2` per pattern, :math:`f = a + ζ`,
:math:`r = b + ζ`, :math:`N = n_0 + n_1 + n_2`, logistic function :math:`\mathrm{expit}`):

.. math::

    \ell = N\log \mathrm{expit}(f) − n_0 f + (n_1 + n_2)\log \mathrm{expit}(r) − n_1 r,\qquad
    ∂\ell/∂f = N\,\mathrm{expit}(−f) − n_0,\quad ∂\ell/∂r = (n_1 + n_2)\,\mathrm{expit}(−r) − n_1 .

Cost (300 patients, 2026-11-22): ~750 exponentials and ~290 logarithms per evaluation
were 41% of a refit's CPU time, one libm call each; the exponentials now go through
:func:`vexp`, which vectorises (kernel 9.0 → 6.8 µs per evaluation). Later the same day
(7.6 → 5.5 µs; benchmarks/RESULTS.md, session 9) every loop over patterns was made to
vectorise or to overlap —

* ``error_model="numpy"``: Numba's default checks every division for zero and raises
  ``ZeroDivisionError``, a branch that stops LLVM from vectorising any loop with a
  division (a loop of ``1/(1 + x_i)``: 182 → 50 ns for 139 elements);
* covariates by row (``*_x_by_covariate``), so that linear predictors are vector
  updates over patterns, and gradients are sums in eight fixed lanes
  (:func:`_lane_dot`) instead of a scatter through memory after every pattern;
* each group's patterns listed level by level (``*_patterns``, ``*_offsets``), so a
  level's gradient is a sum rather than a scatter;
* the irAE stages as one branch-free pass with :func:`vlog1p_unit`;
* one scratch buffer instead of 18 allocations, and no exponential or logarithm for a
  prior that is a single normal.

Sums in fixed lanes change the order of additions, not their determinism: IEEE
arithmetic (no fast-math) gives the same bits on every thread.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numba
import numpy as np
import pytensor.tensor as pt
from llvmlite import ir
from numba import types
from numba.extending import intrinsic
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

from .loglik import LOG_LOG2

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)

#: Blocks of the kernel's parameter vector (the model's free parameters, unconstrained, in
#: the sampling parameterisation of the module docstring), by name. An absent part of a
#: specification has size 0.
PARAMETERS = ("log_hr", "log_median", "log_shape", "log_or", "irae_a_any", "irae_b_severe",
              "sigma_tumour", "tumour_effect_z", "sigma_centre", "centre_effect_z",
              "sigma_tumour_irae", "tumour_effect_irae_z", "sigma_organ", "organ_effect_z")
#: Constants of the prior (fixed for a prior set: compiled into the graph).
PRIOR_INPUTS = ("prior_mean", "prior_precision", "prior_log_norm", "group_sd_scale")
#: Cohort arrays with real values, as named in
#: :func:`rechallenge.fused_model.sampling_inputs`, in the order of :func:`pack_cohort_arrays`.
REAL_ARRAYS = ("tumour_information", "centre_information", "tumour_irae_information", "organ_information",
               "events", "events_x_pfs2", "events_log_time", "log_time",
               "pfs2_pattern_x_by_covariate", "events_tumour", "events_centre",
               "pattern_x_irae_by_covariate", "pattern_counts_by_outcome",
               "pfs2_mean_x", "tumour_weight", "centre_weight",
               "irae_mean_x", "tumour_irae_weight", "organ_weight")
#: Cohort arrays of indices, likewise.
INTEGER_ARRAYS = ("patient_pfs2_pattern", "pfs2_pattern_tumour_idx", "pfs2_pattern_centre_idx",
                  "pfs2_tumour_patterns", "pfs2_tumour_offsets", "pfs2_centre_patterns", "pfs2_centre_offsets",
                  "pattern_tumour_idx", "pattern_organ_idx",
                  "irae_tumour_patterns", "irae_tumour_offsets", "organ_patterns", "organ_offsets")
#: Every data input of the kernel, by name.
DATA = PRIOR_INPUTS + REAL_ARRAYS + INTEGER_ARRAYS
#: Header entries per packed array: offset, length, columns (0 for a vector).
_HEADER_WIDTH = 3


def pack_cohort_arrays(arrays) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's cohort arrays as two vectors: ``(reals, integers)``.

    ``reals`` joins :data:`REAL_ARRAYS` (flattened in C order); ``integers`` starts with a
    header of (offset, length, columns) per array of :data:`REAL_ARRAYS` then
    :data:`INTEGER_ARRAYS` (offsets into ``reals`` or into ``integers`` itself), followed by
    :data:`INTEGER_ARRAYS`. Why: nutpie's compiled log density rebuilds the tuple of its
    shared arrays on every call, ~0.16 µs per array at 30 arrays (measured 2026-11-22:
    1.1, 2.2 and 5.9 µs per call with 1, 10 and 30), which cost 2.3 µs of a 300-patient
    evaluation when each array was an input of its own.
    """
    header = np.zeros(_HEADER_WIDTH * (len(REAL_ARRAYS) + len(INTEGER_ARRAYS)), dtype=np.int64)
    reals, integers = [], []
    position = 0
    for i, name in enumerate(REAL_ARRAYS):
        value = np.asarray(arrays[name], dtype=float)
        header[_HEADER_WIDTH * i:_HEADER_WIDTH * (i + 1)] = position, value.size, value.shape[1] if value.ndim == 2 else 0
        reals.append(value.ravel())
        position += value.size
    position = header.size
    for i, name in enumerate(INTEGER_ARRAYS, start=len(REAL_ARRAYS)):
        value = np.asarray(arrays[name], dtype=np.int64)
        header[_HEADER_WIDTH * i:_HEADER_WIDTH * (i + 1)] = position, value.size, 0
        integers.append(value.ravel())
        position += value.size
    return np.concatenate([np.zeros(0), *reals]), np.concatenate([header, *integers])


# ---- an exponential that LLVM can vectorise ------------------------------------------
# In this module, not a module of its own: Numba's on-disk cache (cache=True) checks only
# the source file of the cached function, so an edited callee in another file would leave
# joint_density's cached machine code stale.

_INV_LN2 = 1.0 / math.log(2.0)
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_ROUND = 6755399441055744.0  # 1.5 * 2**52: x + _ROUND - _ROUND rounds x to an integer
_OVERFLOW = 709.782712893384  # log(largest double)
_UNDERFLOW = -708.0


@intrinsic
def _bits_as_double(typingctx, bits):
    """Reinterpret the 64 bits of an int64 as a float64 (a no-op in machine code)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@numba.njit(inline="always", cache=True)
def vexp(x: float) -> float:
    r""":math:`e^x` within 1 ulp, branch-free, so that loops of it vectorise.

    Numba compiles ``math.exp`` to a call into the C library, and a loop containing a call
    is not vectorised: the PyPI build of llvmlite has no vector maths library (SVML). In this
    kernel the ~750 exponentials per evaluation at 300 patients were 28% of a
    refit's CPU time (``perf``, 2026-11-22), executed one at a time. This function is
    pure arithmetic, so a loop ``out[i] = vexp(x[i])`` becomes SIMD code: 1.45 ns per element
    against 4.3 ns for ``math.exp`` (AMD EPYC, AVX-512, 300-element loops).

    Method (Cody & Waite 1980 range reduction; Muller, *Elementary Functions*, 3rd ed., §11):

    .. math::

        n = \operatorname{round}(x/\ln 2),\quad r = (x − n\,c_{hi}) − n\,c_{lo}\in[−\tfrac{\ln 2}{2}, \tfrac{\ln 2}{2}],
        \quad e^x = 2^n \sum_{j=0}^{13} r^j/j!

    with :math:`c_{hi} + c_{lo} = \ln 2` (fdlibm's split: :math:`n c_{hi}` is exact), the
    rounding done by adding and subtracting :math:`1.5·2^{52}`, and :math:`2^n` assembled in
    the exponent bits. The truncation error is :math:`|r|^{14}/14! < 5·10^{-18}` relative, so the
    result is within 1 ulp of the correctly rounded value (tested against ``math.exp``).
    Special values: ``exp(nan) = nan``, ``exp(x) = inf`` for ``x > 709.78``, and ``0`` for
    ``x < −708`` (the subnormal range is flushed to zero; ``exp(−708) ≈ 3·10^{-308}``).
    IEEE arithmetic throughout, so results do not depend on vector width or alignment.

    **Never compile it with fast-math.** Reassociation folds ``x + 1.5·2^52 − 1.5·2^52`` to
    ``x`` and merges the two halves of ln 2, which gave relative errors up to 0.85. Numba
    compiles a function inlined with ``inline="always"`` under its *caller's* flags, and an
    njit function without explicit flags inherits fast-math from a fast-math caller (as
    PyTensor's generated graph code is by default): every caller must be declared with an
    explicit ``fastmath=False``, as :func:`joint_density` is
    (tested through a fast-math PyTensor compile).
    """
    clamped = min(max(x, _UNDERFLOW), _OVERFLOW)
    n = clamped * _INV_LN2 + _ROUND - _ROUND
    r = (clamped - n * _LN2_HI) - n * _LN2_LO
    p = 1.0 / 6227020800.0  # 1/13!
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # 2^(n-1) then ×2, so that n = 1024 (x up to 709.78) stays a finite exponent.
    y = p * _bits_as_double((np.int64(n) + 1022) << 52) * 2.0
    y = math.inf if x > _OVERFLOW else y
    y = 0.0 if x < _UNDERFLOW else y
    return x if x != x else y



# fdlibm e_log.c: coefficients of R(z) = Lg1 z + ... + Lg7 z^7, z = s².
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_SQRT2_MINUS_1 = math.sqrt(2.0) - 1.0


@numba.njit(inline="always", cache=True)
def vlog1p_unit(x: float) -> float:
    r""":math:`\log(1 + x)` for :math:`0 ≤ x ≤ 1`, within 1 ulp, branch-free so that loops of it vectorise.

    The irAE likelihood needs :math:`\log(1 + e^{−|x|})` twice per pattern; ``math.log1p``
    is a call into the C library, which keeps the loop scalar (see :func:`vexp`).

    Method (fdlibm's ``e_log.c``, Sun Microsystems 1993): with :math:`1 + x = 2^k(1 + f)`,
    :math:`k ∈ \{0, 1\}` chosen so that :math:`\sqrt2/2 − 1 ≤ f ≤ \sqrt2 − 1`,
    :math:`s = f/(2 + f)` and :math:`\log(1 + f) = f − (f^2/2 − s(f^2/2 + R(s^2)))` where
    R is fdlibm's degree-7 minimax polynomial (|error| < 2^{-58.45}); :math:`k \ln 2` is
    added in two parts (:data:`_LN2_HI` exact). For small x, f = x exactly, so
    ``vlog1p_unit(x) = x`` to 1 ulp down to the smallest doubles (tested against
    ``math.log1p`` on [0, 1] and 10^{-300}..1). IEEE arithmetic only: like :func:`vexp`,
    never compile it with fast-math.
    """
    big = x > _SQRT2_MINUS_1
    f = (x - 1.0) * 0.5 if big else x
    k = 1.0 if big else 0.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


@numba.njit(error_model="numpy", cache=True)
def _mixture(x, mean, precision, log_norm):
    """``(log p(x), d log p / dx)`` of a normal mixture; ``log_norm = log w − log s − ½log 2π``.

    Components are ordered by weight; padding components (log_norm = −∞) come last and
    are skipped, and a single component needs no exponential or logarithm.
    """
    n = 1
    while n < mean.shape[0] and log_norm[n] > -np.inf:
        n += 1
    if n == 1:
        d = x - mean[0]
        return log_norm[0] - 0.5 * d * d * precision[0], -d * precision[0]
    top = -np.inf
    for c in range(n):
        d = x - mean[c]
        top = max(top, log_norm[c] - 0.5 * d * d * precision[c])
    total = 0.0
    slope = 0.0
    for c in range(n):
        d = x - mean[c]
        e = math.exp(log_norm[c] - 0.5 * d * d * precision[c] - top)
        total += e
        slope -= e * d * precision[c]
    return top + math.log(total), slope / total


@numba.njit(error_model="numpy", cache=True)
def _group_prior(z, s, scale, information, u, c, g_z):
    """Effects and prior of one group in the sampling parameterisation; writes ``u``,
    ``c`` and ``∂/∂z`` into ``u``, ``c``, ``g_z`` and returns ``(log p, ∂ log p/∂s)``.

    ``s ~ N(0, h²)`` (σ = |s|), ``c_g = √(1 + s² I_g)``, ``z_g ~ N(0, c_g²)``,
    ``u_g = s z_g / c_g``. Empty ``z``: no group, no prior.
    """
    n = z.shape[0]
    if n == 0:
        return 0.0, 0.0
    logp = -HALF_LOG_2PI - math.log(scale) - 0.5 * (s / scale) ** 2
    g_s = -s / scale ** 2
    for j in range(n):
        c2 = 1.0 + s * s * information[j]
        c[j] = math.sqrt(c2)
        u[j] = s * z[j] / c[j]
        logp += -HALF_LOG_2PI - 0.5 * math.log(c2) - 0.5 * z[j] * z[j] / c2
        g_z[j] = -z[j] / c2
        g_s += s * information[j] / c2 * (z[j] * z[j] / c2 - 1.0)
    return logp, g_s


@numba.njit(error_model="numpy", cache=True)
def _chain(g_u, z, s, c, g_z, g_s):
    """Add the gradient with respect to the effects ``u`` to that of ``(z, s)``
    (``∂u/∂z = s/c``, ``∂u/∂s = z/c³``). Returns the new ``∂/∂s``."""
    for j in range(g_u.shape[0]):
        g_z[j] += g_u[j] * s / c[j]
        g_s += g_u[j] * z[j] / c[j] ** 3
    return g_s


@numba.njit(inline="always", cache=True)
def _weighted(weight, values):
    """``Σ_j weight_j · values_j``."""
    total = 0.0
    for j in range(values.shape[0]):
        total += weight[j] * values[j]
    return total


@numba.njit(inline="always", cache=True)
def _add_scaled(g, weight, factor):
    """``g += factor · weight`` (in place)."""
    for j in range(g.shape[0]):
        g[j] += factor * weight[j]


@numba.njit(inline="always", cache=True)
def _lane_sum(x, lo, hi):
    """``Σ_{lo≤i<hi} x_i`` in eight interleaved partial sums (a fixed order, so IEEE
    arithmetic still allows the CPU to overlap them; a single running sum is one long
    dependency chain)."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    i = lo
    while i + 8 <= hi:
        a0 += x[i]
        a1 += x[i + 1]
        a2 += x[i + 2]
        a3 += x[i + 3]
        a4 += x[i + 4]
        a5 += x[i + 5]
        a6 += x[i + 6]
        a7 += x[i + 7]
        i += 8
    total = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    while i < hi:
        total += x[i]
        i += 1
    return total


@numba.njit(inline="always", cache=True)
def _lane_dot(x, first, y, n):
    """``Σ_{i<n} x[first + i] · y_i`` in eight interleaved partial sums (see :func:`_lane_sum`)."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    i = 0
    while i + 8 <= n:
        a0 += x[first + i] * y[i]
        a1 += x[first + i + 1] * y[i + 1]
        a2 += x[first + i + 2] * y[i + 2]
        a3 += x[first + i + 3] * y[i + 3]
        a4 += x[first + i + 4] * y[i + 4]
        a5 += x[first + i + 5] * y[i + 5]
        a6 += x[first + i + 6] * y[i + 6]
        a7 += x[first + i + 7] * y[i + 7]
        i += 8
    total = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    while i < n:
        total += x[first + i] * y[i]
        i += 1
    return total


@numba.njit(inline="always", cache=True)
def _lane_gather_sum(x, index, lo, hi):
    """``Σ_{lo≤k<hi} x[index_k]`` in four interleaved partial sums (see :func:`_lane_sum`)."""
    a0 = a1 = a2 = a3 = 0.0
    k = lo
    while k + 4 <= hi:
        a0 += x[index[k]]
        a1 += x[index[k + 1]]
        a2 += x[index[k + 2]]
        a3 += x[index[k + 3]]
        k += 4
    total = (a0 + a1) + (a2 + a3)
    while k < hi:
        total += x[index[k]]
        k += 1
    return total


@numba.njit(inline="always", cache=True)
def _real(reals, integers, i):
    """Array ``REAL_ARRAYS[i]`` (flattened) and its number of columns (:func:`pack_cohort_arrays`)."""
    at = _HEADER_WIDTH * i
    return reals[integers[at]:integers[at] + integers[at + 1]], integers[at + 2]


@numba.njit(inline="always", cache=True)
def _integer(integers, i):
    """Array ``INTEGER_ARRAYS[i]`` (:func:`pack_cohort_arrays`)."""
    at = _HEADER_WIDTH * (len(REAL_ARRAYS) + i)
    return integers[integers[at]:integers[at] + integers[at + 1]]


@numba.njit(inline="always", cache=True)
def _carve(buffer, at, n):
    """``(buffer[at:at + n], at + n)``: the next n elements of a scratch buffer."""
    return buffer[at:at + n], at + n


@numba.njit(error_model="numpy", cache=True)
def _block(theta, start, size, j):
    """Block ``j`` of :data:`PARAMETERS` in the parameter vector (a view; empty if absent)."""
    return theta[start[j]:start[j] + size[j]]


@numba.njit(error_model="numpy", cache=True)
def _scale_parameter(theta, start, size, j):
    """``s`` of the group SD block ``j`` (σ = |s|; 0 when the group is absent)."""
    return theta[start[j]] if size[j] else 0.0


@numba.njit(fastmath=False, error_model="numpy", cache=True)
def joint_density(theta, start, size, prior_mean, prior_precision, prior_log_norm, group_sd_scale,
                  reals, integers):
    """Log density and its gradient with respect to the parameter vector ``theta``.

    Declared ``fastmath=False``: without an explicit value Numba lets the kernel inherit
    fast-math from its caller (PyTensor's graph code, by default), which broke
    :func:`vexp` and made the sums thread-dependent. (Declaring it
    on the helpers too doubled the kernel's time; they inherit it from here.) Declared
    ``error_model="numpy"`` (as are its helpers): divisions follow IEEE rules instead of
    raising, so the loops that divide vectorise, and a degenerate point gives a
    non-finite density (a divergence for the sampler) rather than an exception.

    ``theta`` holds the parameters in the sampling parameterisation of the module
    docstring; block ``j`` of :data:`PARAMETERS` is ``theta[start[j]:start[j] + size[j]]``
    (size 0: absent). Prior rows: log-HRs, log median, log shape, then (with an irAE
    part) log-ORs, ``a``, ``b``. ``reals`` and ``integers`` hold the cohort arrays
    (:func:`pack_cohort_arrays`); matrices are read flattened. Returns
    ``(log p, ∇ log p)`` (a 0-d array and a vector shaped like ``theta``).
    """
    # ---- cohort arrays, in the order of REAL_ARRAYS and INTEGER_ARRAYS ------------------
    tumour_information, _ = _real(reals, integers, 0)
    centre_information, _ = _real(reals, integers, 1)
    tumour_irae_information, _ = _real(reals, integers, 2)
    organ_information, _ = _real(reals, integers, 3)
    events, _ = _real(reals, integers, 4)
    events_x_pfs2, _ = _real(reals, integers, 5)
    events_log_time, _ = _real(reals, integers, 6)
    log_time, _ = _real(reals, integers, 7)
    x_pfs2, n_patterns = _real(reals, integers, 8)  # covariate j of pattern p: [j * n_patterns + p]
    events_tumour, _ = _real(reals, integers, 9)
    events_centre, _ = _real(reals, integers, 10)
    x_irae, _ = _real(reals, integers, 11)
    counts, n_irae_columns = _real(reals, integers, 12)  # n0, n1, n2 of pattern p: [k * n_irae_patterns + p]
    pfs2_mean_x, _ = _real(reals, integers, 13)
    tumour_weight, _ = _real(reals, integers, 14)
    centre_weight, _ = _real(reals, integers, 15)
    irae_mean_x, _ = _real(reals, integers, 16)
    tumour_irae_weight, _ = _real(reals, integers, 17)
    organ_weight, _ = _real(reals, integers, 18)
    patient_pfs2_pattern = _integer(integers, 0)
    pfs2_pattern_tumour_idx = _integer(integers, 1)
    pfs2_pattern_centre_idx = _integer(integers, 2)
    pfs2_tumour_patterns = _integer(integers, 3)
    pfs2_tumour_offsets = _integer(integers, 4)
    pfs2_centre_patterns = _integer(integers, 5)
    pfs2_centre_offsets = _integer(integers, 6)
    pattern_tumour_idx = _integer(integers, 7)
    pattern_organ_idx = _integer(integers, 8)
    irae_tumour_patterns = _integer(integers, 9)
    irae_tumour_offsets = _integer(integers, 10)
    organ_patterns = _integer(integers, 11)
    organ_offsets = _integer(integers, 12)

    grad = np.zeros(theta.shape[0])
    log_hr, g_hr = _block(theta, start, size, 0), _block(grad, start, size, 0)
    log_or, g_or = _block(theta, start, size, 3), _block(grad, start, size, 3)
    n_hr = log_hr.shape[0]
    n_or = log_or.shape[0]
    has_irae = size[4] > 0
    ls = theta[start[2]]
    k = math.exp(ls)

    # ---- group effects (blocks 6..13: s, z of tumour, centre, tumour-irAE, organ) ------
    z_t, gz_t = _block(theta, start, size, 7), _block(grad, start, size, 7)
    z_c, gz_c = _block(theta, start, size, 9), _block(grad, start, size, 9)
    z_ti, gz_ti = _block(theta, start, size, 11), _block(grad, start, size, 11)
    z_o, gz_o = _block(theta, start, size, 13), _block(grad, start, size, 13)
    s_t = _scale_parameter(theta, start, size, 6)
    s_c = _scale_parameter(theta, start, size, 8)
    s_ti = _scale_parameter(theta, start, size, 10)
    s_o = _scale_parameter(theta, start, size, 12)
    # Every intermediate array is a slice of one scratch buffer: each allocation costs
    # ~50 ns, and the kernel needed 18 of them.
    n_t, n_c, n_ti, n_o = z_t.shape[0], z_c.shape[0], z_ti.shape[0], z_o.shape[0]
    n_patients = log_time.shape[0]
    n_irae_patterns = n_irae_columns if has_irae else 0
    scratch = np.empty(3 * (n_t + n_c + n_ti + n_o) + 4 * n_patterns + n_patients + 3 * n_irae_patterns)
    u_t, at = _carve(scratch, 0, n_t)  # group effects u_g
    u_c, at = _carve(scratch, at, n_c)
    u_ti, at = _carve(scratch, at, n_ti)
    u_o, at = _carve(scratch, at, n_o)
    c_t, at = _carve(scratch, at, n_t)  # c_g = √(1 + s² I_g)
    c_c, at = _carve(scratch, at, n_c)
    c_ti, at = _carve(scratch, at, n_ti)
    c_o, at = _carve(scratch, at, n_o)
    g_ut, at = _carve(scratch, at, n_t)  # ∂/∂u_g
    g_uc, at = _carve(scratch, at, n_c)
    g_uti, at = _carve(scratch, at, n_ti)
    g_uo, at = _carve(scratch, at, n_o)
    w, at = _carve(scratch, at, n_patterns)  # W_p, V_p (module docstring)
    v, at = _carve(scratch, at, n_patterns)
    eta, at = _carve(scratch, at, n_patterns)  # η_p, then e^{η_p} V_p
    cum, at = _carve(scratch, at, n_patterns)  # e^{η_p}, then e^{η_p} W_p
    tau, at = _carve(scratch, at, n_patients)  # τ_i
    zeta, at = _carve(scratch, at, n_irae_patterns)  # ζ_p, then ∂ℓ/∂ζ_p
    irae_terms, at = _carve(scratch, at, n_irae_patterns)  # ℓ of pattern p
    g_severe_stage, at = _carve(scratch, at, n_irae_patterns)  # ∂ℓ/∂r of pattern p
    w[:] = 0.0
    v[:] = 0.0
    logp, gs_t = _group_prior(z_t, s_t, group_sd_scale[0], tumour_information, u_t, c_t, gz_t)
    lp, gs_c = _group_prior(z_c, s_c, group_sd_scale[1], centre_information, u_c, c_c, gz_c)
    logp += lp
    lp, gs_ti = _group_prior(z_ti, s_ti, group_sd_scale[2], tumour_irae_information, u_ti, c_ti, gz_ti)
    logp += lp
    lp, gs_o = _group_prior(z_o, s_o, group_sd_scale[3], organ_information, u_o, c_o, gz_o)
    logp += lp

    # ---- intercepts from their centred form -------------------------------------------
    shift_pfs2 = _weighted(pfs2_mean_x, log_hr) + _weighted(tumour_weight, u_t) + _weighted(centre_weight, u_c)
    lm = theta[start[1]] + shift_pfs2 / k
    shift_irae = _weighted(irae_mean_x, log_or) + _weighted(tumour_irae_weight, u_ti) + _weighted(organ_weight, u_o)
    a = theta[start[4]] - shift_irae if has_irae else 0.0
    b = theta[start[5]] - shift_irae if has_irae else 0.0

    # ---- coefficient and baseline priors ------------------------------------------
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

    # ---- PFS2, Weibull PH by predictor pattern --------------------------------------
    d_total = events[0]
    logp += d_total * (ls + LOG_LOG2 - k * lm) + (k - 1.0) * events_log_time[0]
    g_lm += -k * d_total
    g_ls += d_total * (1.0 - k * lm) + k * events_log_time[0]
    for j in range(n_hr):
        logp += events_x_pfs2[j] * log_hr[j]
        g_hr[j] += events_x_pfs2[j]
    for g in range(n_t):
        logp += events_tumour[g] * u_t[g]
        g_ut[g] = events_tumour[g]
    for g in range(n_c):
        logp += events_centre[g] * u_c[g]
        g_uc[g] = events_centre[g]
    shift = LOG_LOG2 - k * lm
    # Exponentials in loops of their own, so that they vectorise (vexp).
    for i in range(log_time.shape[0]):
        tau[i] = vexp(k * log_time[i] + shift)
    for i in range(log_time.shape[0]):
        p = patient_pfs2_pattern[i]
        w[p] += tau[i]
        v[p] += tau[i] * log_time[i]
    # Linear predictors by covariate (rows of the pattern matrix by covariate), so that the
    # loops over patterns vectorise; sums over patterns in fixed lanes (_lane_dot).
    for p in range(n_patterns):
        eta[p] = ((u_t[pfs2_pattern_tumour_idx[p]] if n_t else 0.0)
                  + (u_c[pfs2_pattern_centre_idx[p]] if n_c else 0.0))
    for j in range(n_hr):
        coefficient = log_hr[j]
        for p in range(n_patterns):
            eta[p] += x_pfs2[j * n_patterns + p] * coefficient
    for p in range(n_patterns):
        cum[p] = vexp(eta[p])
    cum_log = eta
    for p in range(n_patterns):
        cum_log[p] = cum[p] * v[p]
        cum[p] = cum[p] * w[p]
    cum_total = _lane_sum(cum, 0, n_patterns)
    cum_log_time = _lane_sum(cum_log, 0, n_patterns)
    for j in range(n_hr):
        g_hr[j] -= _lane_dot(x_pfs2, j * n_patterns, cum, n_patterns)
    for g in range(n_t):
        g_ut[g] -= _lane_gather_sum(cum, pfs2_tumour_patterns, pfs2_tumour_offsets[g], pfs2_tumour_offsets[g + 1])
    for g in range(n_c):
        g_uc[g] -= _lane_gather_sum(cum, pfs2_centre_patterns, pfs2_centre_offsets[g], pfs2_centre_offsets[g + 1])
    logp -= cum_total
    g_lm += k * cum_total
    g_ls -= k * (cum_log_time - lm * cum_total)

    # ---- irAE recurrence, sequential logit by predictor pattern ------------------------
    if has_irae:
        for p in range(n_irae_patterns):
            zeta[p] = ((u_ti[pattern_tumour_idx[p]] if n_ti else 0.0)
                       + (u_o[pattern_organ_idx[p]] if n_o else 0.0))
        for j in range(n_or):
            coefficient = log_or[j]
            for p in range(n_irae_patterns):
                zeta[p] += x_irae[j * n_irae_patterns + p] * coefficient
        # One pass without branches or calls, so that it vectorises (selects, vexp,
        # vlog1p_unit; the counts by outcome are contiguous rows). A pattern with nobody
        # at the second stage (n1 + n2 = 0) adds exactly 0 there.
        g_zeta = zeta  # ζ_p is read before ∂ℓ/∂ζ_p is written over it
        for p in range(n_irae_patterns):
            n0 = counts[p]
            n1 = counts[n_irae_patterns + p]
            n_second = n1 + counts[2 * n_irae_patterns + p]
            n_first = n0 + n_second
            f = a + zeta[p]
            r = b + zeta[p]
            e_f = vexp(-abs(f))
            e_r = vexp(-abs(r))
            # σ(−x) = e/(1 + e) for x ≥ 0 and 1/(1 + e) otherwise, with e = exp(−|x|)
            g_first = n_first * (e_f if f >= 0.0 else 1.0) / (1.0 + e_f) - n0
            g_second = n_second * (e_r if r >= 0.0 else 1.0) / (1.0 + e_r) - n1
            # n log σ(x) − n_stop x with log σ(x) = min(x, 0) − log(1 + e)
            irae_terms[p] = (n_first * (min(f, 0.0) - vlog1p_unit(e_f)) - n0 * f
                             + n_second * (min(r, 0.0) - vlog1p_unit(e_r)) - n1 * r)
            g_severe_stage[p] = g_second
            g_zeta[p] = g_first + g_second
        logp += _lane_sum(irae_terms, 0, n_irae_patterns)
        g_b_likelihood = _lane_sum(g_severe_stage, 0, n_irae_patterns)
        g_a += _lane_sum(g_zeta, 0, n_irae_patterns) - g_b_likelihood
        g_b += g_b_likelihood
        for j in range(n_or):
            g_or[j] += _lane_dot(x_irae, j * n_irae_patterns, g_zeta, n_irae_patterns)
        for g in range(n_ti):
            g_uti[g] = _lane_gather_sum(g_zeta, irae_tumour_patterns, irae_tumour_offsets[g],
                                        irae_tumour_offsets[g + 1])
        for g in range(n_o):
            g_uo[g] = _lane_gather_sum(g_zeta, organ_patterns, organ_offsets[g], organ_offsets[g + 1])
    else:
        g_uti[:] = 0.0
        g_uo[:] = 0.0

    # ---- chain rule: intercepts to their centred form, effects to (z, s) ----------------
    # lm = lm' + shift_pfs2 / k and a = a' - shift_irae, b = b' - shift_irae
    _add_scaled(g_hr, pfs2_mean_x, g_lm / k)
    _add_scaled(g_ut, tumour_weight, g_lm / k)
    _add_scaled(g_uc, centre_weight, g_lm / k)
    g_ls -= g_lm * shift_pfs2 / k
    _add_scaled(g_or, irae_mean_x, -(g_a + g_b))
    _add_scaled(g_uti, tumour_irae_weight, -(g_a + g_b))
    _add_scaled(g_uo, organ_weight, -(g_a + g_b))
    gs_t = _chain(g_ut, z_t, s_t, c_t, gz_t, gs_t)
    gs_c = _chain(g_uc, z_c, s_c, c_c, gz_c, gs_c)
    gs_ti = _chain(g_uti, z_ti, s_ti, c_ti, gz_ti, gs_ti)
    gs_o = _chain(g_uo, z_o, s_o, c_o, gz_o, gs_o)
    for j, g_s in ((6, gs_t), (8, gs_c), (10, gs_ti), (12, gs_o)):
        if size[j]:
            grad[start[j]] = g_s
    grad[start[1]] = g_lm
    grad[start[2]] = g_ls
    if has_irae:
        grad[start[4]] = g_a
        grad[start[5]] = g_b
    out = np.empty(())
    out[()] = logp
    return out, grad


class FusedDensity(Op):
    """PyTensor Op: inputs ``theta``, ``start``, ``size``, :data:`PRIOR_INPUTS`, then the
    packed ``reals`` and ``integers`` (:func:`pack_cohort_arrays`); outputs the log
    density and its gradient with respect to ``theta`` (:func:`joint_density`).

    ``grad`` reuses the Op's own gradient output (the forward node and the one in the
    gradient graph are merged, so one kernel call gives the value and the gradient).
    """

    __props__ = ()

    def make_node(self, *inputs):
        if len(inputs) != 5 + len(PRIOR_INPUTS):
            raise TypeError(f"FusedDensity takes {5 + len(PRIOR_INPUTS)} inputs, got {len(inputs)}")
        inputs = [pt.as_tensor_variable(x) for x in inputs]
        return Apply(self, inputs, [pt.dscalar(), inputs[0].type()])

    def perform(self, node, inputs, output_storage):
        for storage, value in zip(output_storage, joint_density(*inputs)):
            storage[0] = value

    def connection_pattern(self, node):
        return [[i == 0, False] for i in range(len(node.inputs))]

    def grad(self, inputs, output_grads):
        _, gradient = self(*inputs)
        return [output_grads[0] * gradient] + [disconnected_type() for _ in inputs[1:]]


fused_density = FusedDensity()


def kernel_source_key() -> int:
    """An integer that changes whenever the kernel's source code changes.

    PyTensor caches compiled Numba graphs on disk under a key made of the Op's type and
    properties only, so without this salt an edited (or upgraded) kernel would keep
    running the previously compiled one (observed: the first version of the vectorised
    exponentials was never executed).
    """
    return int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15], 16)


@register_funcify_default_op_cache_key(FusedDensity)
def _numba_fused_density(op, node=None, **kwargs):
    """The Numba implementation: the kernel itself, salted with :func:`kernel_source_key`."""
    return joint_density, kernel_source_key()

