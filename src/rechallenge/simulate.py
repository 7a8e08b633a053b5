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
``pfs2_months`` :math:`= \max(\mathrm{round}(\min(T, C), 3), 0.001)` and
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

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import brentq
from scipy.special import expit, logit

from .loglik import irae_probabilities

from .errors import RechallengeError

__all__ = [
    "COLUMNS", "REASONS", "TUMOUR_TYPES", "STRATEGIES", "REGIMEN_CLASSES", "IRAE_ORGANS",
    "IRAE_RECURRENCE", "PFS2_COVARIATES", "IRAE_COVARIATES", "MISSING_ALLOWED",
    "CONTINUOUS_CENTRE", "CONTINUOUS_SCALE", "DEMO_SEED", "DEMO_N",
    "SimulationError", "Truth", "default_truth", "CovariateSpec", "Censoring",
    "SimulatedCohort", "derive_covariates", "simulate_cohort", "to_csv_text", "demo_cohort",
]

# --------------------------------------------------------------------------- contract

COLUMNS: tuple[str, ...] = (
    "patient_id", "pfs2_months", "pfs2_event", "ecog", "pfs1_months", "tfi_months",
    "liver_mets", "nlr", "discontinuation_reason", "tumour_type", "centre", "strategy",
    "regimen_class", "prior_irae_grade", "prior_irae_organ", "irae_recurrence",
)
REASONS: tuple[str, ...] = ("progression", "irae", "clinical_decision")
TUMOUR_TYPES: tuple[str, ...] = ("nsclc", "melanoma", "rcc", "gastric", "hcc", "escc",
                                 "sclc", "urothelial", "other")
STRATEGIES: tuple[str, ...] = ("monotherapy", "chemo", "antiangiogenic", "radiotherapy",
                               "dual_ici", "triple")
REGIMEN_CLASSES: tuple[str, ...] = ("pd1_pdl1", "ctla4_containing")
IRAE_ORGANS: tuple[str, ...] = ("none", "colitis", "pneumonitis", "hepatitis", "myocarditis",
                                "endocrine", "dermatologic", "renal", "other")
IRAE_RECURRENCE: tuple[str, ...] = ("none", "grade1_2", "grade3plus")
IRAE_GRADES: tuple[int, ...] = (0, 1, 2, 3, 4)

PFS2_COVARIATES: tuple[str, ...] = ("ecog_ge2", "pfs1_lt6", "tfi_le6", "liver_mets", "nlr",
                                    "reason_progression", "reason_irae")
IRAE_COVARIATES: tuple[str, ...] = ("regimen_ctla4", "prior_irae_grade3plus",
                                    "reason_progression", "reason_irae", "tfi_le6")
MISSING_ALLOWED: tuple[str, ...] = ("ecog", "pfs1_months", "tfi_months", "liver_mets", "nlr")
EXTRA_KINDS: tuple[str, ...] = ("binary", "continuous")

#: A continuous extra column ``x`` enters the PFS2 predictor as ``(x - 65) / 10``.
CONTINUOUS_CENTRE = 65.0
CONTINUOUS_SCALE = 10.0

NLR_CUTOFF = 3.8
MONTHS_DECIMALS = 3
NLR_DECIMALS = 2
CONTINUOUS_DECIMALS = 1
_MIN_MONTHS = 0.001
_MIN_NLR = 0.01

_MAR_SLOPE = 1.0

DEMO_SEED = 20261121
DEMO_N = 300

_DERIVED = set(PFS2_COVARIATES) | set(IRAE_COVARIATES)


class SimulationError(RechallengeError, ValueError):
    """An argument of the simulator (truth, covariates, censoring, missingness) is invalid."""


# --------------------------------------------------------------------------- truth


def _as_float_dict(value: Mapping[str, Any] | None, name: str) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SimulationError(f"{name} must be a mapping, got {type(value).__name__}")
    out: dict[str, float] = {}
    for key, val in value.items():
        try:
            out[str(key)] = float(val)
        except (TypeError, ValueError):
            raise SimulationError(f"{name}[{key!r}] must be a number, got {val!r}") from None
        if not math.isfinite(out[str(key)]):
            raise SimulationError(f"{name}[{key!r}] must be finite, got {val!r}")
    return out


@dataclass(frozen=True)
class Truth:
    """The true parameters a cohort is simulated from.

    Attributes
    ----------
    beta
        PFS2 log hazard ratios, keyed by covariate (:data:`PFS2_COVARIATES`, plus the
        names of extra columns; a missing extra key means 0).
    log_median_ref
        Log of the median PFS2 (months) of a non-cured reference patient (all
        covariates 0, zero group effects).
    shape
        Weibull shape ``k`` (> 0).
    cure_fraction
        Probability ``pi`` that a patient never progresses (0 <= pi < 1).
    sigma_tumour, sigma_centre
        Standard deviations of the tumour-type and centre effects on the log hazard.
    gamma
        irAE-recurrence log odds ratios, keyed by :data:`IRAE_COVARIATES`.
    a_any, a_3
        logit P(recurrence of any grade) and logit P(grade >= 3) of the reference
        patient (``a_3 < a_any``); the sequential-logit second-stage intercept is
        ``b = logit(expit(a_3) / expit(a_any))``.
    sigma_tumour_irae, sigma_organ
        Standard deviations of the tumour-type and prior-irAE-organ effects on the
        log odds of recurrence.
    tumour_effects, centre_effects, tumour_effects_irae, organ_effects
        Group effects ``u``, ``v``, ``w``, ``o``. ``None`` means "draw them from the
        sigmas"; the truth returned with a simulated cohort always carries the realised
        values (``centre_effects`` is ``{}`` when there are no centres).
    """

    beta: dict[str, float]
    log_median_ref: float
    shape: float
    cure_fraction: float
    sigma_tumour: float
    sigma_centre: float
    gamma: dict[str, float]
    a_any: float
    a_3: float
    sigma_tumour_irae: float
    sigma_organ: float
    tumour_effects: dict[str, float] | None = None
    centre_effects: dict[str, float] | None = None
    tumour_effects_irae: dict[str, float] | None = None
    organ_effects: dict[str, float] | None = None

    def __post_init__(self) -> None:
        for name in ("beta", "gamma", "tumour_effects", "centre_effects",
                     "tumour_effects_irae", "organ_effects"):
            object.__setattr__(self, name, _as_float_dict(getattr(self, name), name))
        for name in ("log_median_ref", "shape", "cure_fraction", "sigma_tumour", "sigma_centre",
                     "a_any", "a_3", "sigma_tumour_irae", "sigma_organ"):
            value = getattr(self, name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise SimulationError(f"truth.{name} must be a number, got {value!r}") from None
            if not math.isfinite(value):
                raise SimulationError(f"truth.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, value)
        if self.shape <= 0:
            raise SimulationError(f"truth.shape must be > 0, got {self.shape}")
        if not 0.0 <= self.cure_fraction < 1.0:
            raise SimulationError(f"truth.cure_fraction must be in [0, 1), got {self.cure_fraction}")
        for name in ("sigma_tumour", "sigma_centre", "sigma_tumour_irae", "sigma_organ"):
            if getattr(self, name) < 0:
                raise SimulationError(f"truth.{name} must be >= 0, got {getattr(self, name)}")
        if not self.a_3 < self.a_any:
            raise SimulationError(f"truth.a_3 ({self.a_3}) must be < truth.a_any ({self.a_any})")
        missing_beta = [k for k in PFS2_COVARIATES if k not in self.beta]
        if missing_beta:
            raise SimulationError(f"truth.beta lacks {missing_beta}")
        missing_gamma = [k for k in IRAE_COVARIATES if k not in self.gamma]
        if missing_gamma:
            raise SimulationError(f"truth.gamma lacks {missing_gamma}")
        unknown_gamma = sorted(set(self.gamma) - set(IRAE_COVARIATES))
        if unknown_gamma:
            raise SimulationError(f"truth.gamma has unknown covariates {unknown_gamma} "
                                  f"(expected {list(IRAE_COVARIATES)})")
        for name, levels in (("tumour_effects", TUMOUR_TYPES),
                             ("tumour_effects_irae", TUMOUR_TYPES),
                             ("organ_effects", IRAE_ORGANS)):
            given = getattr(self, name)
            if given is not None and set(given) - set(levels):
                raise SimulationError(f"truth.{name} has unknown levels "
                                      f"{sorted(set(given) - set(levels))} (expected {list(levels)})")

    @property
    def median_ref(self) -> float:
        """Median PFS2 (months) of a non-cured reference patient, ``exp(log_median_ref)``."""
        return math.exp(self.log_median_ref)

    @property
    def weibull_scale(self) -> float:
        """Weibull scale ``lambda0 = m_ref / (ln 2)^(1/k)`` of the reference patient."""
        return self.median_ref / math.log(2.0) ** (1.0 / self.shape)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary of the fields (floats and dicts of floats; ``None`` kept)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, dict):
                out[key] = {str(k): float(v) for k, v in value.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Truth:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        if not isinstance(data, Mapping):
            raise SimulationError(f"a truth must be a mapping, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SimulationError(f"unknown truth fields {unknown}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise SimulationError(f"incomplete truth: {exc}") from None

    def to_yaml(self) -> str:
        """YAML text of :meth:`to_dict` (fields in declaration order)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


def default_truth() -> Truth:
    """The default true parameters (round figures of the same order as the evidence).

    PFS2 hazard ratios: ECOG >= 2 2.5, PFS1 < 6 months 1.8, TFI <= 6 months 1.8, liver
    metastases 1.5, NLR >= 3.8 2.2, discontinuation for progression 1.7 and for an irAE
    1.1 (vs clinical decision); reference median 8 months, Weibull shape 0.9, no cure
    fraction, sigma(tumour) 0.3, sigma(centre) 0.15. irAE-recurrence odds ratios:
    CTLA-4-containing regimen 1.7, prior grade >= 3 irAE 1.6, reason progression 1.0,
    reason irAE 1.3, TFI <= 6 months 1.3; reference P(any recurrence) 0.30 and
    P(grade >= 3) 0.08; sigma(tumour) 0.3, sigma(organ) 0.3.
    """
    ln = math.log
    return Truth(
        beta={"ecog_ge2": ln(2.5), "pfs1_lt6": ln(1.8), "tfi_le6": ln(1.8),
              "liver_mets": ln(1.5), "nlr": ln(2.2), "reason_progression": ln(1.7),
              "reason_irae": ln(1.1)},
        log_median_ref=ln(8.0), shape=0.9, cure_fraction=0.0,
        sigma_tumour=0.3, sigma_centre=0.15,
        gamma={"regimen_ctla4": ln(1.7), "prior_irae_grade3plus": ln(1.6),
               "reason_progression": 0.0, "reason_irae": ln(1.3), "tfi_le6": ln(1.3)},
        a_any=float(logit(0.30)), a_3=float(logit(0.08)),
        sigma_tumour_irae=0.3, sigma_organ=0.3,
    )


# --------------------------------------------------------------------------- covariates


def _default(mapping: Mapping[str, float]):
    return field(default_factory=lambda: dict(mapping))


@dataclass(frozen=True)
class CovariateSpec:
    """Distributions of the simulated covariates.

    The defaults are rough figures from the cohorts of the two reviews behind the
    priors (mostly NSCLC, retrospective, a third discontinued for an irAE); they are
    meant to give realistic proportions, not to describe any particular cohort.
    Categorical probabilities are mappings from level to probability (levels left out
    have probability 0; the values must sum to 1). Log-normal variables are given by
    their median and the SD of their logarithm (0 gives a point mass at the median).

    Attributes
    ----------
    ecog_probs
        P(ECOG = 0, 1, 2, 3, 4).
    pfs1_median_months, pfs1_sdlog
        PFS on the first ICI course (months), log-normal.
    tfi_median_months, tfi_sdlog
        Treatment-free interval (months), log-normal.
    liver_mets_prob
        P(liver metastases).
    nlr_median, nlr_sdlog
        Neutrophil-to-lymphocyte ratio, log-normal, recorded to 2 decimals (>= 0.01).
    reason_probs, tumour_probs, strategy_probs
        Discontinuation reason, tumour type and rechallenge strategy.
    ctla4_strategies, ctla4_other_prob
        The regimen is ``ctla4_containing`` for these strategies, otherwise with
        probability ``ctla4_other_prob``; else ``pd1_pdl1``.
    irae_grade_probs_after_irae, irae_grade_probs_otherwise
        P(prior irAE grade = 0, ..., 4) when the first course was stopped for an irAE,
        and otherwise.
    organ_probs
        Organ of the prior irAE when its grade is >= 1 (``none`` if and only if grade 0).
    extra_binary_prob
        P(1) of a binary extra column.
    extra_continuous_mean, extra_continuous_sd
        Normal distribution of a continuous extra column (recorded to 1 decimal).
    """

    ecog_probs: tuple[float, ...] = (0.35, 0.50, 0.12, 0.03, 0.0)
    pfs1_median_months: float = 8.0
    pfs1_sdlog: float = 0.9
    tfi_median_months: float = 6.5
    tfi_sdlog: float = 1.0
    liver_mets_prob: float = 0.2
    nlr_median: float = 3.2
    nlr_sdlog: float = 0.6
    reason_probs: Mapping[str, float] = _default(
        {"progression": 0.5, "irae": 0.3, "clinical_decision": 0.2})
    tumour_probs: Mapping[str, float] = _default(
        {"nsclc": 0.5, "melanoma": 0.15, "rcc": 0.1, "gastric": 0.08, "escc": 0.05,
         "hcc": 0.05, "sclc": 0.04, "urothelial": 0.03, "other": 0.0})
    strategy_probs: Mapping[str, float] = _default(
        {"monotherapy": 0.4, "chemo": 0.25, "antiangiogenic": 0.15, "radiotherapy": 0.1,
         "dual_ici": 0.07, "triple": 0.03})
    ctla4_strategies: tuple[str, ...] = ("dual_ici",)
    ctla4_other_prob: float = 0.05
    irae_grade_probs_after_irae: tuple[float, ...] = (0.0, 0.0, 0.45, 0.45, 0.10)
    irae_grade_probs_otherwise: tuple[float, ...] = (0.60, 0.25, 0.12, 0.03, 0.0)
    organ_probs: Mapping[str, float] = _default(
        {"colitis": 0.25, "pneumonitis": 0.15, "hepatitis": 0.15, "endocrine": 0.20,
         "dermatologic": 0.15, "renal": 0.04, "myocarditis": 0.01, "other": 0.05})
    extra_binary_prob: float = 0.5
    extra_continuous_mean: float = 65.0
    extra_continuous_sd: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ecog_probs", tuple(float(p) for p in self.ecog_probs))
        object.__setattr__(self, "irae_grade_probs_after_irae",
                           tuple(float(p) for p in self.irae_grade_probs_after_irae))
        object.__setattr__(self, "irae_grade_probs_otherwise",
                           tuple(float(p) for p in self.irae_grade_probs_otherwise))
        object.__setattr__(self, "ctla4_strategies", tuple(self.ctla4_strategies))
        for name in ("reason_probs", "tumour_probs", "strategy_probs", "organ_probs"):
            object.__setattr__(self, name, {str(k): float(v) for k, v in getattr(self, name).items()})
        _check_probs(self.ecog_probs, len(IRAE_GRADES), "ecog_probs")
        _check_probs(self.irae_grade_probs_after_irae, len(IRAE_GRADES), "irae_grade_probs_after_irae")
        _check_probs(self.irae_grade_probs_otherwise, len(IRAE_GRADES), "irae_grade_probs_otherwise")
        _categorical_probs(self.reason_probs, REASONS, "reason_probs")
        _categorical_probs(self.tumour_probs, TUMOUR_TYPES, "tumour_probs")
        _categorical_probs(self.strategy_probs, STRATEGIES, "strategy_probs")
        if "none" in self.organ_probs:
            raise SimulationError("organ_probs: 'none' is implied by grade 0 and cannot be given")
        _categorical_probs(self.organ_probs, IRAE_ORGANS[1:], "organ_probs")
        bad = sorted(set(self.ctla4_strategies) - set(STRATEGIES))
        if bad:
            raise SimulationError(f"ctla4_strategies: unknown strategies {bad}")
        for name in ("liver_mets_prob", "ctla4_other_prob", "extra_binary_prob"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise SimulationError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("pfs1_median_months", "tfi_median_months", "nlr_median"):
            if not float(getattr(self, name)) > 0:
                raise SimulationError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("pfs1_sdlog", "tfi_sdlog", "nlr_sdlog", "extra_continuous_sd"):
            if not float(getattr(self, name)) >= 0:
                raise SimulationError(f"{name} must be >= 0, got {getattr(self, name)}")


def _check_probs(probs: Sequence[float], length: int, name: str) -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    if p.shape != (length,):
        raise SimulationError(f"{name} must have {length} probabilities, got {len(p)}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise SimulationError(f"{name} must be non-negative numbers, got {list(probs)}")
    if abs(p.sum() - 1.0) > 1e-6:
        raise SimulationError(f"{name} must sum to 1, got {p.sum():.6g}")
    return p / p.sum()


def _categorical_probs(probs: Mapping[str, float], levels: Sequence[str], name: str) -> np.ndarray:
    unknown = sorted(set(probs) - set(levels))
    if unknown:
        raise SimulationError(f"{name}: unknown levels {unknown} (expected {list(levels)})")
    # canonical level order, so the result does not depend on the mapping's order
    return _check_probs([probs.get(level, 0.0) for level in levels], len(levels), name)


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


# --------------------------------------------------------------------------- censoring


@dataclass(frozen=True)
class Censoring:
    """Censoring of PFS2.

    Attributes
    ----------
    accrual_months
        Length of the (uniform) accrual period.
    follow_up_months
        Time from the last accrual to the analysis (> 0); administrative censoring is
        uniform on ``[follow_up_months, follow_up_months + accrual_months]``.
    dropout_rate
        Rate (per month) of exponential drop-out; 0 for none.
    """

    accrual_months: float = 24.0
    follow_up_months: float = 12.0
    dropout_rate: float = 0.01

    def __post_init__(self) -> None:
        for name in ("accrual_months", "follow_up_months", "dropout_rate"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise SimulationError(f"censoring.{name} must be finite and >= 0, got {value}")
            object.__setattr__(self, name, value)
        if self.follow_up_months <= 0:
            raise SimulationError("censoring.follow_up_months must be > 0")


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
    """The model's derived covariates of a cohort (see the module docstring).

    Parameters
    ----------
    data
        A cohort with the contract columns (values may be missing).
    extra
        Extra columns and their kinds (``"binary"``: used as is; ``"continuous"``:
        ``(x - 65) / 10``).

    Returns
    -------
    pandas.DataFrame
        Float columns :data:`PFS2_COVARIATES`, then ``regimen_ctla4`` and
        ``prior_irae_grade3plus``, then the extra columns; ``NaN`` where the source
        value is missing.
    """
    def indicator(values: pd.Series, condition) -> np.ndarray:
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            out = condition(x).astype(float)
        out[np.isnan(x)] = np.nan
        return out

    def level(values: pd.Series, target: str) -> np.ndarray:
        s = values.astype(object)
        out = (s == target).to_numpy(dtype=float)
        out[s.isna().to_numpy()] = np.nan
        return out

    out = pd.DataFrame(index=data.index)
    out["ecog_ge2"] = indicator(data["ecog"], lambda x: x >= 2)
    out["pfs1_lt6"] = indicator(data["pfs1_months"], lambda x: x < 6)
    out["tfi_le6"] = indicator(data["tfi_months"], lambda x: x <= 6)
    out["liver_mets"] = indicator(data["liver_mets"], lambda x: x == 1)
    out["nlr"] = indicator(data["nlr"], lambda x: x >= NLR_CUTOFF)
    out["reason_progression"] = level(data["discontinuation_reason"], "progression")
    out["reason_irae"] = level(data["discontinuation_reason"], "irae")
    out["regimen_ctla4"] = level(data["regimen_class"], "ctla4_containing")
    out["prior_irae_grade3plus"] = indicator(data["prior_irae_grade"], lambda x: x >= 3)
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
    data["pfs2_months"] = _round_months(np.minimum(t_event, c_time))

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


# --------------------------------------------------------------------------- CSV


_DECIMALS = {"pfs2_months": MONTHS_DECIMALS, "pfs1_months": MONTHS_DECIMALS,
             "tfi_months": MONTHS_DECIMALS, "nlr": NLR_DECIMALS}
_INTEGER = {"pfs2_event", "ecog", "liver_mets", "prior_irae_grade"}
_MAX_INFERRED_DECIMALS = 6


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _format_int(value: Any, column: str) -> str:
    x = float(value)
    if x != round(x):
        raise SimulationError(f"column {column!r}: {value!r} is not an integer")
    return str(int(round(x)))


def _format_fixed(value: Any, decimals: int) -> str:
    text = f"{float(value):.{decimals}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    return text


def _column_formatter(name: str, series: pd.Series):
    if name in _DECIMALS:
        d = _DECIMALS[name]
        return lambda v: _format_fixed(v, d)
    if name in _INTEGER:
        return lambda v: _format_int(v, name)
    if pd.api.types.is_bool_dtype(series.dtype):
        return lambda v: str(int(bool(v)))
    if pd.api.types.is_integer_dtype(series.dtype):
        return lambda v: str(int(v))
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.dropna().to_numpy(dtype=float)
        for d in range(_MAX_INFERRED_DECIMALS + 1):
            if np.all(np.abs(np.round(values, d) - values) <= 1e-9 * np.maximum(1.0, np.abs(values))):
                break
        if d == 0:
            return lambda v: _format_int(v, name)
        return lambda v: _format_fixed(v, d)
    return str


def to_csv_text(data: pd.DataFrame) -> str:
    """Deterministic CSV text of a cohort.

    Months are written with 3 decimals, NLR with 2, integer columns (``pfs2_event``,
    ``ecog``, ``liver_mets``, ``prior_irae_grade`` and integer-valued extra columns) as
    integers, other float columns with the fewest decimals (at most 6) that represent
    them, text as is; missing values are empty cells; lines end with ``\\n``. The
    columns are written in the frame's order.

    Parameters
    ----------
    data
        The cohort, e.g. ``SimulatedCohort.data``.

    Returns
    -------
    str
        The CSV text, header included.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    columns = [str(c) for c in data.columns]
    writer.writerow(columns)
    formatters = [_column_formatter(c, data[c]) for c in columns]
    cells = []
    for col, fmt in zip(columns, formatters):
        cells.append(["" if _is_missing(v) else fmt(v) for v in data[col].tolist()])
    for row in zip(*cells):
        writer.writerow(row)
    return buffer.getvalue()


# --------------------------------------------------------------------------- demo


def demo_cohort() -> SimulatedCohort:
    """The bundled synthetic demo cohort.

    ``simulate_cohort(DEMO_N, seed=DEMO_SEED, missing={"nlr": 0.1}, n_centres=6)``
    with the default truth; the file ``rechallenge/data/demo_cohort_synthetic.csv`` is
    ``to_csv_text(demo_cohort().data)``. The patients are not real.
    """
    return simulate_cohort(DEMO_N, seed=DEMO_SEED, missing={"nlr": 0.1}, n_centres=6)
