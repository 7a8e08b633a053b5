"""Parameters of a simulation: the true model parameters and the designs.

:class:`Truth` (true log HRs/ORs, baseline, group sds and realised group effects),
:class:`CovariateSpec` (covariate distributions) and :class:`Censoring`, used by
:func:`rechallenge.simulate.simulate_cohort` (see its module docstring for the
generative process).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

import numpy as np
import yaml
from scipy.special import logit

from . import cohort as _cohort
from .errors import RechallengeError
from .modelspec import IRAE_COVARIATES as _IRAE, PFS2_COVARIATES as _PFS2

TUMOUR_TYPES = _cohort.CATEGORIES["tumour_type"]
REASONS = _cohort.CATEGORIES["discontinuation_reason"]
STRATEGIES = _cohort.CATEGORIES["strategy"]
IRAE_ORGANS = _cohort.CATEGORIES["prior_irae_organ"]
PFS2_COVARIATES: tuple[str, ...] = tuple(_PFS2)
IRAE_COVARIATES: tuple[str, ...] = tuple(_IRAE)
IRAE_GRADES: tuple[int, ...] = (0, 1, 2, 3, 4)

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
