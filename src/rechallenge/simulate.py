r"""Simulate cohorts from the generative process of the rechallenge model.

The simulator follows the model's likelihood exactly, so a model fitted to a simulated
cohort should recover the truth it was made from. It is used for the bundled demo
cohort (:func:`demo_cohort`, ``rechallenge/data/demo_cohort_synthetic.csv``), for
parameter-recovery tests and for simulation studies. Everything is drawn from a single
:class:`numpy.random.Generator` seeded by ``seed``, in a fixed order: the same seed
gives the same numbers and, through :func:`to_csv_text`, the same CSV bytes.

Derived covariates
------------------
The model uses binary covariates derived from the recorded columns (the recorded,
rounded values: months to 3 decimals, NLR to 2):

=========================  =========================================================
``ecog_ge2``               ``ecog >= 2``
``pfs1_lt6``               ``pfs1_months < 6``
``tfi_le6``                ``tfi_months <= 6``
``liver_mets``             ``liver_mets`` (0/1)
``nlr``                    ``1`` if ``nlr >= 3.8`` else ``0``
``reason_progression``     ``discontinuation_reason == "progression"``
``reason_irae``            ``discontinuation_reason == "irae"``
                           (reference level: ``clinical_decision``)
``regimen_ctla4``          ``regimen_class == "ctla4_containing"``
``prior_irae_grade3plus``  ``prior_irae_grade >= 3``
=========================  =========================================================

Extra columns (``extra={"sex": "binary", "age": "continuous"}``) enter the PFS2
predictor as they are when binary (0/1) and as :math:`(x - 65)/10` when continuous, so
the coefficient of ``age`` is a log hazard ratio *per 10 years, centred at 65*.

PFS2: Weibull proportional hazards with an optional cure fraction
-----------------------------------------------------------------
With PFS2 covariates :math:`x_i` = (``ecog_ge2``, ``pfs1_lt6``, ``tfi_le6``,
``liver_mets``, ``nlr``, ``reason_progression``, ``reason_irae``, extras),

.. math::
    \eta_i = \sum_j \beta_j x_{ij} + u_{g[i]} + v_{c[i]}, \qquad
    u_g \sim N(0, \sigma_\text{tumour}^2), \qquad v_c \sim N(0, \sigma_\text{centre}^2),

one :math:`u_g` per tumour type and one :math:`v_c` per centre (:math:`v = 0` when the
cohort has no centres; the ``centre`` column is then empty). With the reference-patient
median :math:`m_\text{ref} = \exp(\texttt{log\_median\_ref})` months and shape
:math:`k`, the scale is :math:`\lambda_0 = m_\text{ref} / (\ln 2)^{1/k}` and a
non-cured patient survives progression-free with

.. math::
    S_u(t \mid x_i) = \exp\!\left(-(t/\lambda_0)^k \, e^{\eta_i}\right),

so :math:`e^{\beta_j}` is a hazard ratio. A patient is cured (never progresses,
:math:`T = \infty`) with probability :math:`\pi` (``cure_fraction``); the population
survival is :math:`S(t) = \pi + (1 - \pi) S_u(t)`. Progression times are drawn by
inversion, :math:`T = \lambda_0 \, (-\ln U / e^{\eta_i})^{1/k}`, :math:`U \sim U(0, 1]`.

Censoring is administrative (uniform accrual over ``accrual_months``, analysis
``follow_up_months`` after the last patient is accrued, so
:math:`C_\text{admin} \sim U(\text{follow\_up}, \text{follow\_up} + \text{accrual})`)
combined with random drop-out, :math:`D \sim \text{Exp}(\texttt{dropout\_rate})` per
month; :math:`C = \min(C_\text{admin}, D)`. The recorded time is
``pfs2_months`` :math:`= \max(\mathrm{round}(\min(T, C), 3), 0.001)` (unrounded with
``exact_times=True``, as simulation studies use it) and
``pfs2_event`` :math:`= 1\{T \le C\}`.

irAE recurrence: sequential (continuation-ratio) logit, as in the model
-----------------------------------------------------------------------
With irAE covariates :math:`z_i` = (``regimen_ctla4``, ``prior_irae_grade3plus``,
``reason_progression``, ``reason_irae``, ``tfi_le6``) and the ordered outcome
none < grade1_2 < grade3plus,

.. math::
    \zeta_i = \sum_j \gamma_j z_{ij} + w_{g[i]} + o_{r[i]}, \qquad
    P(Y_i \ge \text{grade1\_2}) = \operatorname{logistic}(a_\text{any} + \zeta_i), \qquad
    P(Y_i = \text{grade3plus} \mid Y_i \ge \text{grade1\_2}) = \operatorname{logistic}(b + \zeta_i),

(:func:`rechallenge.loglik.irae_probabilities`, the model's own formula) where
:math:`b = \operatorname{logit}(\sigma(a_3) / \sigma(a_\text{any}))`, so that
:math:`a_\text{any}` and :math:`a_3` are the logits of P(any grade) and P(grade >= 3) of
the reference patient (:math:`a_3 < a_\text{any}`); :math:`w_g \sim N(0, \sigma_\text{tumour,irae}^2)` per
tumour type and :math:`o_r \sim N(0, \sigma_\text{organ}^2)` per organ of the prior
irAE (``prior_irae_organ``, including ``none``). :math:`e^{\gamma_j}` is a common odds
ratio. A fraction ``irae_assessed_fraction`` of patients (completely at random) have
the outcome recorded; for the others ``irae_recurrence`` is empty.

Covariates and missingness
--------------------------
Covariates are drawn independently of each other (see :class:`CovariateSpec`), except
the regimen class (depends on the strategy), the prior irAE grade (depends on the
discontinuation reason) and its organ (``none`` if and only if the grade is 0).
Missing values (``missing={"nlr": 0.2}``) are removed *after* the outcomes have been
generated from the complete covariates. ``missing_mechanism="mcar"`` removes each value
with the requested probability; ``"mar"`` uses
:math:`\operatorname{logit} p_i = c + 1.0 \cdot \texttt{reason\_progression}_i` with
:math:`c` solved so that the mean of :math:`p_i` over the cohort equals the requested
fraction (the discontinuation reason is never missing, so the data are missing at
random).

Draw order
----------
The generator is consumed in this order, with a fixed number of draws per step: the
covariates (``n`` draws each: ECOG, PFS1, TFI, liver metastases, NLR, reason, tumour
type, strategy, regimen, prior irAE grade, organ, centre), the tumour, irAE-tumour and
organ effects (one per level of each category, drawn even when the truth supplies
them), the outcome uniforms (progression time, cure, accrual, drop-out, irAE
recurrence, irAE assessed), the missingness uniforms of the five core columns, the
centre effects, and then each extra column (values, then its missingness uniforms) in
alphabetical order of name. Hence changing the missing fractions, the mechanism, the
assessed fraction or the truth never changes the other draws, and adding an extra column
with a zero coefficient leaves the rest of the cohort unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit, logit

from .loglik import irae_probabilities

from . import cohort as _cohort
from .cohort_csv import MONTHS_DECIMALS, NLR_DECIMALS, to_csv_text
from .simtruth import (IRAE_COVARIATES, PFS2_COVARIATES, Censoring, CovariateSpec, SimulationError,
                       Truth, _categorical_probs, _check_probs, default_truth)

__all__ = [
    "COLUMNS", "REASONS", "TUMOUR_TYPES", "STRATEGIES", "REGIMEN_CLASSES", "IRAE_ORGANS",
    "IRAE_RECURRENCE", "PFS2_COVARIATES", "IRAE_COVARIATES", "MISSING_ALLOWED",
    "CONTINUOUS_CENTRE", "CONTINUOUS_SCALE", "DEMO_SEED", "DEMO_N",
    "SimulationError", "Truth", "default_truth", "CovariateSpec", "Censoring",
    "SimulatedCohort", "derive_covariates", "simulate_cohort", "to_csv_text", "demo_cohort",
]

# --------------------------------------------------------------------------- contract

COLUMNS = _cohort.COLUMNS
REASONS = _cohort.CATEGORIES["discontinuation_reason"]
TUMOUR_TYPES = _cohort.CATEGORIES["tumour_type"]
STRATEGIES = _cohort.CATEGORIES["strategy"]
REGIMEN_CLASSES = _cohort.CATEGORIES["regimen_class"]
IRAE_ORGANS = _cohort.CATEGORIES["prior_irae_organ"]
IRAE_RECURRENCE = _cohort.CATEGORIES["irae_recurrence"]

MISSING_ALLOWED = _cohort.IMPUTABLE
EXTRA_KINDS: tuple[str, ...] = ("binary", "continuous")

#: A continuous extra column ``x`` enters the PFS2 predictor as ``(x - 65) / 10``.
CONTINUOUS_CENTRE = 65.0
CONTINUOUS_SCALE = 10.0

NLR_CUTOFF = _cohort.NLR_CUTOFF
CONTINUOUS_DECIMALS = 1
_MIN_MONTHS = 0.001
#: Floor of an exact (unrounded) PFS2 time: positive, as the contract requires.
_TINY_MONTHS = 1e-12
_MIN_NLR = 0.01

_MAR_SLOPE = 1.0

DEMO_SEED = 20261121
DEMO_N = 300

_DERIVED = set(PFS2_COVARIATES) | set(IRAE_COVARIATES)


def _categorical(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Index of the category of each uniform ``u`` (inverse CDF; zero-probability levels never occur)."""
    cdf = np.cumsum(p)
    idx = np.searchsorted(cdf, u, side="right")
    # guard against a cumulative sum ending slightly below 1: fall back on the last
    # level with positive probability
    last = int(np.flatnonzero(p > 0)[-1])
    return np.minimum(idx, last)


def _lognormal(z: np.ndarray, median: float, sdlog: float) -> np.ndarray:
    return np.exp(math.log(median) + sdlog * z)


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class SimulatedCohort:
    """A simulated cohort.

    Attributes
    ----------
    data
        One row per patient, columns :data:`COLUMNS` in that order (then the extra
        columns); missing values are ``NA``.
    truth
        The truth the data were generated from, with the realised group effects
        (``tumour_effects``, ``centre_effects``, ``tumour_effects_irae``,
        ``organ_effects``) filled in.
    """

    data: pd.DataFrame
    truth: Truth


# --------------------------------------------------------------------------- derived


def _is_continuous_kind(kind: str) -> bool:
    return kind == "continuous"


def derive_covariates(data: pd.DataFrame, extra: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The model's derived covariates of a cohort, as the simulator uses them.

    The card covariates come from :func:`rechallenge.cohort.derive_covariates` (the one
    place where they are defined); a continuous extra column ``x`` then enters the
    simulated PFS2 predictor as ``(x - 65) / 10`` (the truth's log HR is per 10 units
    around 65), a binary one as is.

    Returns
    -------
    pandas.DataFrame
        Float columns :data:`PFS2_COVARIATES`, ``regimen_ctla4``,
        ``prior_irae_grade3plus``, then the extra columns; ``NaN`` where missing.
    """
    names = list(PFS2_COVARIATES) + ["regimen_ctla4", "prior_irae_grade3plus"]
    out = _cohort.derive_covariates(data)[names]
    for name, kind in sorted((extra or {}).items()):
        x = pd.to_numeric(data[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        out[name] = (x - CONTINUOUS_CENTRE) / CONTINUOUS_SCALE if _is_continuous_kind(kind) else x
    return out


# --------------------------------------------------------------------------- simulate


def _check_extra(extra: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, kind in (extra or {}).items():
        if not isinstance(name, str) or not name.isidentifier():
            raise SimulationError(f"extra column name {name!r} must be an identifier")
        if name in COLUMNS or name in _DERIVED:
            raise SimulationError(f"extra column {name!r} clashes with a column or covariate of the model")
        if kind not in EXTRA_KINDS:
            raise SimulationError(f"extra column {name!r}: kind must be one of {EXTRA_KINDS}, got {kind!r}")
        out[name] = kind
    return out


def _group_effects(given: Mapping[str, float] | None, drawn: dict[str, float],
                   present: Sequence[str], name: str) -> dict[str, float]:
    if given is None:
        return drawn
    lacking = sorted(set(present) - set(given))
    if lacking:
        raise SimulationError(f"truth.{name} lacks levels present in the cohort: {lacking}")
    return {k: float(v) for k, v in given.items()}


def _mar_intercept(target: float, shift: np.ndarray) -> float:
    """``c`` such that ``mean(expit(c + shift)) == target``."""
    return float(brentq(lambda c: float(np.mean(expit(c + shift))) - target, -60.0, 60.0,
                        xtol=1e-12, rtol=1e-12, maxiter=500))


def _missing_mask(u: np.ndarray, fraction: float, mechanism: str,
                  reason_progression: np.ndarray) -> np.ndarray:
    if fraction <= 0.0:
        return np.zeros(u.shape, dtype=bool)
    if mechanism == "mcar":
        return u < fraction
    shift = _MAR_SLOPE * reason_progression
    return u < expit(_mar_intercept(fraction, shift) + shift)


def _round_months(x: np.ndarray) -> np.ndarray:
    return np.maximum(np.round(x, MONTHS_DECIMALS), _MIN_MONTHS)


def simulate_cohort(
    n: int,
    *,
    truth: Truth | None = None,
    seed: int = 0,
    covariates: CovariateSpec | None = None,
    censoring: Censoring | None = None,
    missing: Mapping[str, float] | None = None,
    missing_mechanism: str = "mcar",
    n_centres: int = 0,
    irae_assessed_fraction: float = 0.9,
    extra: Mapping[str, str] | None = None,
    exact_times: bool = False,
) -> SimulatedCohort:
    """Simulate a cohort from the generative model (see the module docstring).

    Parameters
    ----------
    n
        Number of patients (>= 1).
    truth
        True parameters; :func:`default_truth` when ``None``. Group effects it gives are
        used as they are; those it leaves ``None`` are drawn from its sigmas.
    seed
        Seed of the single :class:`numpy.random.Generator` used for every draw.
    covariates
        Covariate distributions; :class:`CovariateSpec` defaults when ``None``.
    censoring
        Censoring; :class:`Censoring` defaults when ``None``.
    missing
        Fraction of values to remove per column (allowed: :data:`MISSING_ALLOWED` and
        the extra columns), after the outcomes are generated.
    missing_mechanism
        ``"mcar"`` (missing completely at random) or ``"mar"`` (logit of the missing
        probability = c + 1.0 * reason_progression, c matching the requested fraction).
    n_centres
        Number of centres (``C1``, ``C2``, ...; equally likely); 0 leaves ``centre``
        empty and removes the centre effect.
    irae_assessed_fraction
        Fraction of patients whose irAE recurrence is recorded (completely at random).
    extra
        Extra columns ``{name: "binary" | "continuous"}``, appended after the contract
        columns in alphabetical order. Their log hazard ratios are ``truth.beta[name]``
        (0 when absent); continuous ones enter per 10 units centred at 65.
    exact_times
        Keep ``pfs2_months`` unrounded (floored at 1e-12 months) instead of rounding it
        to 3 decimals with a floor of 0.001. The rounding makes ties at 0.001 months when
        the hazard is extreme (a prior draw of HR 40 with a baseline median of 1.2 months put 131
        of 300 times there), which the continuous-time model does not describe; studies
        of the model's calibration therefore simulate exact times (the CSV writer still
        writes 3 decimals).

    Returns
    -------
    SimulatedCohort
        The data and the truth with its realised group effects.

    Raises
    ------
    SimulationError
        If an argument is invalid.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SimulationError(f"n must be a positive integer, got {n!r}")
    if isinstance(n_centres, bool) or not isinstance(n_centres, (int, np.integer)) or n_centres < 0:
        raise SimulationError(f"n_centres must be a non-negative integer, got {n_centres!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SimulationError(f"seed must be a non-negative integer, got {seed!r}")
    n, n_centres = int(n), int(n_centres)
    truth = default_truth() if truth is None else truth
    if not isinstance(truth, Truth):
        raise SimulationError(f"truth must be a Truth, got {type(truth).__name__}")
    spec = CovariateSpec() if covariates is None else covariates
    cens = Censoring() if censoring is None else censoring
    extras = _check_extra(extra)
    extra_names = sorted(extras)
    if missing_mechanism not in ("mcar", "mar"):
        raise SimulationError(f"missing_mechanism must be 'mcar' or 'mar', got {missing_mechanism!r}")
    missing = dict(missing or {})
    for col, frac in missing.items():
        if col not in MISSING_ALLOWED and col not in extras:
            raise SimulationError(f"missing: column {col!r} cannot be missing "
                                  f"(allowed: {list(MISSING_ALLOWED) + extra_names})")
        if not isinstance(frac, (int, float, np.floating)) or not 0.0 <= float(frac) < 1.0:
            raise SimulationError(f"missing[{col!r}] must be a fraction in [0, 1), got {frac!r}")
    if not 0.0 <= float(irae_assessed_fraction) <= 1.0:
        raise SimulationError(f"irae_assessed_fraction must be in [0, 1], got {irae_assessed_fraction!r}")
    unknown_beta = sorted(set(truth.beta) - set(PFS2_COVARIATES) - set(extras))
    if unknown_beta:
        raise SimulationError(f"truth.beta has coefficients {unknown_beta} for columns that are "
                              f"neither model covariates nor requested extra columns")

    rng = np.random.default_rng(int(seed))

    # 1. covariates -- n draws each, in a fixed order
    ecog = _categorical(rng.random(n), _check_probs(spec.ecog_probs, 5, "ecog_probs"))
    pfs1 = _round_months(_lognormal(rng.standard_normal(n), spec.pfs1_median_months, spec.pfs1_sdlog))
    tfi = _round_months(_lognormal(rng.standard_normal(n), spec.tfi_median_months, spec.tfi_sdlog))
    liver = (rng.random(n) < spec.liver_mets_prob).astype(np.int64)
    nlr = np.maximum(np.round(_lognormal(rng.standard_normal(n), spec.nlr_median, spec.nlr_sdlog),
                              NLR_DECIMALS), _MIN_NLR)
    reason = np.asarray(REASONS, dtype=object)[
        _categorical(rng.random(n), _categorical_probs(spec.reason_probs, REASONS, "reason_probs"))]
    tumour = np.asarray(TUMOUR_TYPES, dtype=object)[
        _categorical(rng.random(n), _categorical_probs(spec.tumour_probs, TUMOUR_TYPES, "tumour_probs"))]
    strategy = np.asarray(STRATEGIES, dtype=object)[
        _categorical(rng.random(n), _categorical_probs(spec.strategy_probs, STRATEGIES, "strategy_probs"))]
    u_regimen = rng.random(n)
    ctla4 = np.isin(strategy, spec.ctla4_strategies) | (u_regimen < spec.ctla4_other_prob)
    regimen = np.where(ctla4, "ctla4_containing", "pd1_pdl1").astype(object)
    u_grade = rng.random(n)
    grade = np.where(
        reason == "irae",
        _categorical(u_grade, _check_probs(spec.irae_grade_probs_after_irae, 5, "irae_grade_probs_after_irae")),
        _categorical(u_grade, _check_probs(spec.irae_grade_probs_otherwise, 5, "irae_grade_probs_otherwise")),
    ).astype(np.int64)
    organ_idx = 1 + _categorical(rng.random(n),
                                 _categorical_probs(spec.organ_probs, IRAE_ORGANS[1:], "organ_probs"))
    organ = np.asarray(IRAE_ORGANS, dtype=object)[np.where(grade == 0, 0, organ_idx)]
    u_centre = rng.random(n)
    width_c = len(str(n_centres))
    centre_labels = [f"C{j + 1:0{width_c}d}" for j in range(n_centres)]
    if n_centres:
        centre = np.asarray(centre_labels, dtype=object)[
            np.minimum((u_centre * n_centres).astype(np.int64), n_centres - 1)]
    else:
        centre = np.full(n, None, dtype=object)

    # 2. group effects with a fixed number of levels (drawn even when given)
    z_tumour = rng.standard_normal(len(TUMOUR_TYPES))
    z_tumour_irae = rng.standard_normal(len(TUMOUR_TYPES))
    z_organ = rng.standard_normal(len(IRAE_ORGANS))

    # 3. outcome uniforms
    u_time = 1.0 - rng.random(n)          # in (0, 1]
    u_cure = rng.random(n)
    u_accrual = rng.random(n)
    u_dropout = 1.0 - rng.random(n)       # in (0, 1]
    u_irae = rng.random(n)
    u_assessed = rng.random(n)

    # 4. missingness uniforms of the core columns
    u_missing = {col: rng.random(n) for col in MISSING_ALLOWED}

    # 5. centre effects
    z_centre = rng.standard_normal(n_centres)

    # 6. extra columns, alphabetical: values then missingness uniforms
    extra_values: dict[str, np.ndarray] = {}
    for name in extra_names:
        if extras[name] == "binary":
            extra_values[name] = (rng.random(n) < spec.extra_binary_prob).astype(np.int64)
        else:
            extra_values[name] = np.round(spec.extra_continuous_mean
                                          + spec.extra_continuous_sd * rng.standard_normal(n),
                                          CONTINUOUS_DECIMALS)
        u_missing[name] = rng.random(n)

    # group effects: given or drawn
    tumours_present = sorted(set(tumour))
    tumour_eff = _group_effects(truth.tumour_effects,
                                dict(zip(TUMOUR_TYPES, truth.sigma_tumour * z_tumour)),
                                tumours_present, "tumour_effects")
    tumour_eff_irae = _group_effects(truth.tumour_effects_irae,
                                     dict(zip(TUMOUR_TYPES, truth.sigma_tumour_irae * z_tumour_irae)),
                                     tumours_present, "tumour_effects_irae")
    organ_eff = _group_effects(truth.organ_effects,
                               dict(zip(IRAE_ORGANS, truth.sigma_organ * z_organ)),
                               sorted(set(organ)), "organ_effects")
    if truth.centre_effects is not None and n_centres:
        unknown = sorted(set(truth.centre_effects) - set(centre_labels))
        if unknown:
            raise SimulationError(f"truth.centre_effects has unknown centres {unknown} "
                                  f"(this cohort has {centre_labels})")
    centre_eff = _group_effects(truth.centre_effects if n_centres else None,
                                dict(zip(centre_labels, truth.sigma_centre * z_centre)),
                                sorted(set(centre) - {None}), "centre_effects")
    tumour_eff = {k: float(v) for k, v in tumour_eff.items()}
    organ_eff = {k: float(v) for k, v in organ_eff.items()}

    # the complete data (before missingness)
    width = len(str(n))
    data = pd.DataFrame({
        "patient_id": [f"P{i + 1:0{width}d}" for i in range(n)],
        "pfs2_months": np.zeros(n),
        "pfs2_event": np.zeros(n, dtype=np.int64),
        "ecog": ecog.astype(np.int64),
        "pfs1_months": pfs1,
        "tfi_months": tfi,
        "liver_mets": liver,
        "nlr": nlr,
        "discontinuation_reason": reason,
        "tumour_type": tumour,
        "centre": centre,
        "strategy": strategy,
        "regimen_class": regimen,
        "prior_irae_grade": grade,
        "prior_irae_organ": organ,
        "irae_recurrence": np.full(n, None, dtype=object),
    })
    for name in extra_names:
        data[name] = extra_values[name]
    design = derive_covariates(data, extras)

    # PFS2
    eta = np.zeros(n)
    for name in PFS2_COVARIATES:
        eta += truth.beta[name] * design[name].to_numpy()
    for name in extra_names:
        eta += truth.beta.get(name, 0.0) * design[name].to_numpy()
    eta += np.array([tumour_eff[t] for t in tumour])
    if n_centres:
        eta += np.array([centre_eff[c] for c in centre])
    t_event = truth.weibull_scale * (-np.log(u_time) / np.exp(eta)) ** (1.0 / truth.shape)
    t_event = np.where(u_cure < truth.cure_fraction, np.inf, t_event)
    c_admin = cens.follow_up_months + cens.accrual_months * u_accrual
    c_drop = -np.log(u_dropout) / cens.dropout_rate if cens.dropout_rate > 0 else np.full(n, np.inf)
    c_time = np.minimum(c_admin, c_drop)
    data["pfs2_event"] = (t_event <= c_time).astype(np.int64)
    observed = np.minimum(t_event, c_time)
    data["pfs2_months"] = np.maximum(observed, _TINY_MONTHS) if exact_times else _round_months(observed)

    # irAE recurrence
    zeta = np.zeros(n)
    for name in IRAE_COVARIATES:
        zeta += truth.gamma[name] * design[name].to_numpy()
    zeta += np.array([tumour_eff_irae[t] for t in tumour])
    zeta += np.array([organ_eff[o] for o in organ])
    b_severe = float(logit(expit(truth.a_3) / expit(truth.a_any)))
    p_any, p_3 = irae_probabilities(np, truth.a_any, b_severe, zeta)
    recurrence = np.where(u_irae < p_3, "grade3plus",
                          np.where(u_irae < p_any, "grade1_2", "none")).astype(object)
    recurrence[u_assessed >= irae_assessed_fraction] = None
    data["irae_recurrence"] = recurrence

    # missingness, after the outcomes
    reason_prog = design["reason_progression"].to_numpy()
    for col in list(MISSING_ALLOWED) + extra_names:
        mask = _missing_mask(u_missing[col], float(missing.get(col, 0.0)), missing_mechanism,
                             reason_prog)
        if col in ("ecog", "liver_mets") or (col in extras and extras[col] == "binary"):
            values = pd.array(data[col].to_numpy(), dtype="Int64")
            values[mask] = pd.NA
            data[col] = values
        else:
            values = data[col].to_numpy(dtype=float).copy()
            values[mask] = np.nan
            data[col] = values

    realised = replace(truth, tumour_effects=tumour_eff, centre_effects=centre_eff,
                       tumour_effects_irae={k: float(v) for k, v in tumour_eff_irae.items()},
                       organ_effects=organ_eff)
    return SimulatedCohort(data=data, truth=realised)


# --------------------------------------------------------------------------- demo


def demo_cohort() -> SimulatedCohort:
    """The bundled synthetic demo cohort.

    ``simulate_cohort(DEMO_N, seed=DEMO_SEED, missing={"nlr": 0.1}, n_centres=6)``
    with the default truth; the file ``rechallenge/data/demo_cohort_synthetic.csv`` is
    ``to_csv_text(demo_cohort().data)``. The patients are not real.
    """
    return simulate_cohort(DEMO_N, seed=DEMO_SEED, missing={"nlr": 0.1}, n_centres=6)
