"""Published estimates → normal distributions on the modelling scale.

Every function here turns one reported number (with its interval, p-value or sample
size) into a normal distribution ``N(mean, se^2)`` on the scale the model works on:
log for hazard and odds ratios, logit for probabilities, log for medians and Weibull
shapes. :func:`row_effect` dispatches on the evidence table's ``measure`` column and
applies the discounts of the prior specification (``priors/default.yaml``).

Equations (``z = Φ⁻¹(0.975) = 1.959964``):

* ratio with 95% CI: ``mean = log(est)``, ``se = (log U − log L) / (2 z)``; if the
  lower limit is reported as 0, ``se = (log U − log est) / z``.
* ratio with p only: ``se = |log est| / Φ⁻¹(1 − p/2)``. For ``p < b`` the same with
  ``b``: since the true p is smaller, this is an upper bound on the SE (conservative).
* rate ``p`` of ``n`` patients: ``x = p n``, ``mean = log((x+½)/(n−x+½))``,
  ``se = sqrt(1/(x+½) + 1/(n−x+½))`` (empirical logit, Cox 1970).
* two medians (exponential survival): ``log HR = log(m_ref / m_exp)``,
  ``se = sqrt(1/d_exp + 1/d_ref)`` with ``d`` the events (``var log median ≈ 1/d``).
* two landmark survival probabilities under PH: ``HR = log S_exp(t) / log S_ref(t)``;
  with ``g = log(−log S)``, ``var g ≈ var S / (S log S)²`` (delta method).
* two rates: log odds ratio with Woolf's SE ``sqrt(Σ 1/cell)``.
* median ``m`` and landmark ``S(t)`` of one cohort → Weibull shape
  ``k = [log(−log S(t)) − log(log 2)] / log(t / m)`` (delta method for the SE).

References
----------
Altman DG, Bland JM (2011). How to obtain the confidence interval from a P value. BMJ 343:d2090.
Parmar MKB, Torri V, Stewart L (1998). Extracting summary statistics to perform
meta-analyses of the published literature for survival endpoints. Stat Med 17:2815–34.
Tierney JF et al. (2007). Practical methods for incorporating summary time-to-event
data into meta-analysis. Trials 8:16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy.stats import norm

Z95: float = float(norm.ppf(0.975))

#: Evidence measures understood by :func:`row_effect`.
RATIO_MEASURES = ("HR", "OR")
MEASURES = ("HR", "OR", "rate", "median", "landmark", "median_pair", "landmark_pair",
            "rate_pair", "median_landmark", "qualitative")


@dataclass(frozen=True)
class Effect:
    """One piece of evidence as a normal distribution on the modelling scale.

    Attributes
    ----------
    mean, se
        Mean and (discounted) standard error on the modelling scale.
    raw_se
        The standard error before discounts.
    inflation
        Product of the variance-inflation factors applied (``se² = raw_se² · inflation``).
    discounts
        Names of the discounts applied (keys of the specification's ``discounts``).
    row_id
        The evidence row it came from.
    """

    mean: float
    se: float
    raw_se: float
    inflation: float
    discounts: tuple[str, ...]
    row_id: str


def parse_p(text: object) -> tuple[float | None, bool]:
    """Parse a reported p-value such as ``"0.013"``, ``"<0.001"`` or ``"P<0.05"``.

    Returns
    -------
    (value, is_bound)
        ``value`` is ``None`` when nothing is reported; ``is_bound`` is True for ``"<"``.

    Raises
    ------
    ValueError
        If the text is not a p-value in (0, 1].
    """
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None, False
    s = str(text).strip().lower().replace(" ", "").lstrip("p").lstrip("=")
    if not s:
        return None, False
    bound = s.startswith("<")
    s = s.lstrip("<")
    value = float(s)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"p-value {text!r} is not in (0, 1]")
    return value, bound


def se_from_ci(estimate: float, lower: float, upper: float, level: float = 0.95) -> float:
    """Standard error of ``log(estimate)`` from a confidence interval of a ratio.

    ``se = (log U − log L) / (2 z)``; when ``L`` is reported as 0 (rounded), the upper
    half-width is used instead: ``se = (log U − log est) / z``.
    """
    z = float(norm.ppf(0.5 + level / 2))
    if not (upper > 0 and estimate > 0 and lower >= 0):
        raise ValueError("ratio and its interval must be positive")
    if lower == 0:
        return (math.log(upper) - math.log(estimate)) / z
    return (math.log(upper) - math.log(lower)) / (2 * z)


def se_from_p(estimate: float, p: float) -> float:
    """Standard error of ``log(estimate)`` from a two-sided p-value (Altman & Bland 2011).

    ``se = |log est| / Φ⁻¹(1 − p/2)``. With a bound ``p < b`` pass ``b``: the result is
    then the largest SE consistent with the report.
    """
    if estimate <= 0:
        raise ValueError("ratio must be positive")
    if estimate == 1.0:
        raise ValueError("a ratio of exactly 1 carries no information about its SE")
    return abs(math.log(estimate)) / float(norm.ppf(1 - p / 2))


def p_from_ci(estimate: float, lower: float, upper: float) -> float:
    """Two-sided p-value implied by a ratio and its 95% CI (Altman & Bland 2011)."""
    se = se_from_ci(estimate, lower, upper)
    return float(2 * norm.sf(abs(math.log(estimate)) / se))


def ci_and_p_agree(estimate: float, lower: float, upper: float, p: float, bound: bool,
                   tolerance: float = 3.0) -> bool:
    """Whether a reported p-value agrees with the one implied by the CI.

    Exact p: agree when the two are within a factor ``tolerance`` of each other, or both
    below 0.001 (rounding). Bound ``p < b``: agree when the CI-implied p is below ``b``.
    """
    implied = p_from_ci(estimate, lower, upper)
    if bound:
        return implied < p
    if implied < 1e-3 and p <= 1e-3:
        return True
    return 1 / tolerance <= implied / p <= tolerance


def logit_from_rate(rate: float, n: float) -> tuple[float, float]:
    """Empirical logit and its SE for a proportion ``rate`` observed in ``n`` patients."""
    if not 0 <= rate <= 1 or n <= 0:
        raise ValueError("rate must be in [0, 1] and n > 0")
    x = rate * n
    mean = math.log((x + 0.5) / (n - x + 0.5))
    se = math.sqrt(1 / (x + 0.5) + 1 / (n - x + 0.5))
    return mean, se


def logit_from_ci(rate: float, lower: float, upper: float) -> tuple[float, float]:
    """Logit of a proportion with SE from its 95% CI (on the logit scale)."""
    def logit(p: float) -> float:
        return math.log(p / (1 - p))
    if not 0 < lower <= rate <= upper < 1:
        raise ValueError("need 0 < lower <= rate <= upper < 1")
    return logit(rate), (logit(upper) - logit(lower)) / (2 * Z95)


def log_or_from_rates(rate_exposed: float, n_exposed: float,
                      rate_reference: float, n_reference: float) -> tuple[float, float]:
    """Log odds ratio of two proportions with Woolf's SE (0.5 added to every cell)."""
    a = rate_exposed * n_exposed + 0.5
    b = n_exposed - rate_exposed * n_exposed + 0.5
    c = rate_reference * n_reference + 0.5
    d = n_reference - rate_reference * n_reference + 0.5
    return math.log(a * d / (b * c)), math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)


def log_hr_from_medians(median_exposed: float, median_reference: float,
                        events_exposed: float, events_reference: float) -> tuple[float, float]:
    """Log HR from two medians under exponential survival.

    ``HR = m_ref / m_exp``; ``var log m ≈ 1/d`` for an exponential median with ``d``
    events, so ``se = sqrt(1/d_exp + 1/d_ref)``.
    """
    if min(median_exposed, median_reference, events_exposed, events_reference) <= 0:
        raise ValueError("medians and event counts must be positive")
    return (math.log(median_reference / median_exposed),
            math.sqrt(1 / events_exposed + 1 / events_reference))


def cloglog_var(survival: float, var_survival: float) -> float:
    """Delta-method variance of ``g = log(−log S)``: ``var S / (S log S)²``."""
    return var_survival / (survival * math.log(survival)) ** 2


def landmark_var(survival: float, *, n: float | None = None,
                 lower: float | None = None, upper: float | None = None) -> float:
    """Variance of a landmark survival probability from its 95% CI or, failing that,
    binomially from ``n`` (ignores censoring before the landmark: optimistic)."""
    if lower is not None and upper is not None:
        return ((upper - lower) / (2 * Z95)) ** 2
    if n is None or n <= 0:
        raise ValueError("a landmark needs a CI or n")
    return survival * (1 - survival) / n


def log_hr_from_landmarks(s_exposed: float, var_exposed: float,
                          s_reference: float, var_reference: float) -> tuple[float, float]:
    """Log HR from two survival probabilities at the same time under PH.

    ``S_exp = S_ref^HR`` gives ``log HR = log(−log S_exp) − log(−log S_ref)``.
    """
    for s in (s_exposed, s_reference):
        if not 0 < s < 1:
            raise ValueError("landmark survival must be in (0, 1)")
    mean = math.log(-math.log(s_exposed)) - math.log(-math.log(s_reference))
    se = math.sqrt(cloglog_var(s_exposed, var_exposed) + cloglog_var(s_reference, var_reference))
    return mean, se


def log_median(median: float, n_events: float) -> tuple[float, float]:
    """Log median survival with ``se = 1/sqrt(d)`` (exponential approximation)."""
    if median <= 0 or n_events <= 0:
        raise ValueError("median and events must be positive")
    return math.log(median), 1 / math.sqrt(n_events)


def weibull_shape_from_median_landmark(median: float, se_log_median: float, time: float,
                                       survival: float, se_cloglog: float) -> tuple[float, float]:
    """Log Weibull shape from a median and one landmark of the same curve.

    With ``S(t) = exp(−(t/λ)^k)``: ``k = [log(−log S(t)) − log(log 2)] / log(t/m)``.
    Delta method on ``a = log(−log S(t))`` and ``b = log m``; returns ``(log k, se)``.
    """
    if time <= median:
        raise ValueError("the landmark must lie beyond the median")
    a = math.log(-math.log(survival))
    denom = math.log(time) - math.log(median)
    k = (a - math.log(math.log(2))) / denom
    if k <= 0:
        raise ValueError("landmark and median imply a non-positive shape")
    dk_da = 1 / denom
    dk_db = k / denom
    se_k = math.sqrt((dk_da * se_cloglog) ** 2 + (dk_db * se_log_median) ** 2)
    return math.log(k), se_k / k


def _num(row: Mapping[str, object], key: str) -> float | None:
    v = row.get(key)
    if v is None or v == "":
        return None
    f = float(v)  # type: ignore[arg-type]
    return None if math.isnan(f) else f


def automatic_discounts(row: Mapping[str, object], parameter_endpoint: str) -> list[str]:
    """Discounts implied by a row's judgement columns.

    ``other_endpoint`` when the row's endpoint is not the parameter's; ``endpoint_unclear``
    when it is ``unclear``; ``other_cutoff`` when ``cutoff_match == different``;
    ``univariate`` for univariate/unadjusted analyses; ``median_ratio`` and
    ``landmark_ratio`` for HRs derived from medians or landmarks.
    """
    keys: list[str] = []
    endpoint = str(row.get("endpoint", ""))
    if endpoint == "unclear":
        keys.append("endpoint_unclear")
    elif endpoint != parameter_endpoint:
        keys.append("other_endpoint")
    if row.get("cutoff_match") == "different":
        keys.append("other_cutoff")
    if row.get("analysis") in ("univariate", "unadjusted"):
        keys.append("univariate")
    if row.get("measure") == "median_pair":
        keys.append("median_ratio")
    if row.get("measure") == "landmark_pair":
        keys.append("landmark_ratio")
    return keys


def _raw_effect(row: Mapping[str, object], events_fraction: float,
                rate_pseudo_n: float) -> tuple[float, float, list[str]]:
    """Undiscounted (mean, se) of one row, plus discounts implied by how it was derived."""
    measure = row["measure"]
    est = _num(row, "estimate")
    lo, hi = _num(row, "lower95"), _num(row, "upper95")
    ref = _num(row, "reference_estimate")
    n = _num(row, "n")
    n_exp, n_ref = _num(row, "n_exposed"), _num(row, "n_reference")
    p, bound = parse_p(row.get("p_value"))
    extra: list[str] = []
    if est is None:
        raise ValueError("no estimate")
    if measure in RATIO_MEASURES:
        mean = math.log(est)
        candidates = []
        if lo is not None and hi is not None:
            candidates.append(se_from_ci(est, lo, hi))
        if p is not None:
            candidates.append(se_from_p(est, p))
        if not candidates:
            raise ValueError("a ratio needs a CI or a p-value")
        # Both given: they agree (validated) or the conflict is recorded; the larger SE
        # is the conservative choice either way.
        return mean, max(candidates), extra
    if measure == "rate":
        if lo is not None and hi is not None:
            mean, se = logit_from_ci(est, lo, hi)
        elif n is not None:
            mean, se = logit_from_rate(est, n)
        else:
            mean, se = logit_from_rate(est, rate_pseudo_n)
            extra.append("no_n")
        return mean, se, extra
    if measure == "rate_pair":
        if n_exp is None or n_ref is None:
            raise ValueError("a rate pair needs n_exposed and n_reference")
        return (*log_or_from_rates(est, n_exp, ref, n_ref), extra)  # type: ignore[arg-type]
    if measure == "median":
        if n is None:
            raise ValueError("a median needs n")
        mean, se = log_median(est, events_fraction * n)
        return mean, se, extra
    if measure == "median_pair":
        if n_exp is not None and n_ref is not None:
            d_exp, d_ref = events_fraction * n_exp, events_fraction * n_ref
        elif n is not None:
            d_exp = d_ref = events_fraction * n / 2
        else:
            raise ValueError("a median pair needs n or group sizes")
        mean, se = log_hr_from_medians(est, ref, d_exp, d_ref)  # type: ignore[arg-type]
        if p is not None and mean != 0:
            se = max(se, abs(mean) / float(norm.ppf(1 - p / 2)))
        return mean, se, extra
    if measure == "landmark_pair":
        var_exp = landmark_var(est, n=n_exp, lower=lo, upper=hi)
        var_ref = landmark_var(ref, n=n_ref)  # type: ignore[arg-type]
        mean, se = log_hr_from_landmarks(est, var_exp, ref, var_ref)  # type: ignore[arg-type]
        return mean, se, extra
    if measure == "landmark":
        if lo is not None and hi is not None:
            mean, se = logit_from_ci(est, lo, hi)
        elif n is not None:
            mean, se = logit_from_rate(est, n)
        else:
            raise ValueError("a landmark needs a CI or n")
        return mean, se, extra
    if measure == "median_landmark":
        t = _num(row, "landmark_months")
        if ref is None or t is None or n is None:
            raise ValueError("median_landmark needs reference_estimate (the median), landmark_months and n")
        var_s = landmark_var(est, n=n, lower=lo, upper=hi)
        mean, se = weibull_shape_from_median_landmark(
            ref, 1 / math.sqrt(events_fraction * n), t, est, math.sqrt(cloglog_var(est, var_s)))
        return mean, se, extra
    raise ValueError(f"measure {measure!r} carries no number")


def row_effect(row: Mapping[str, object], *, parameter_endpoint: str,
               discounts: Mapping[str, float], events_fraction: float = 0.8,
               rate_pseudo_n: float = 20.0) -> Effect:
    """One evidence row → a discounted normal on the modelling scale.

    The sign is flipped when ``direction == "inverted"`` (the row reports the favourable
    level), so that the effect always refers to the parameter's adverse level. The
    variance is multiplied by every applicable discount factor:
    ``se² = raw_se² · Π_j f_j``.

    Parameters
    ----------
    row
        A validated evidence-table row (mapping of column → value).
    parameter_endpoint
        The endpoint of the parameter the row informs (``pfs2`` or an ``irae_*``).
    discounts
        Variance-inflation factors by name (``priors/default.yaml: discounts``).
    events_fraction, rate_pseudo_n
        Conversion constants (``priors/default.yaml: conversions``).
    """
    mean, raw_se, derived = _raw_effect(row, events_fraction, rate_pseudo_n)
    if row.get("direction") == "inverted":
        mean = -mean
    keys = automatic_discounts(row, parameter_endpoint) + derived
    extra = str(row.get("extra_discounts") or "")
    keys += [k.strip() for k in extra.split(";") if k.strip()]
    unknown = [k for k in keys if k not in discounts]
    if unknown:
        raise KeyError(f"discount(s) {unknown} are not defined in the specification")
    inflation = float(np.prod([discounts[k] for k in keys])) if keys else 1.0
    return Effect(mean=mean, se=raw_se * math.sqrt(inflation), raw_se=raw_se,
                  inflation=inflation, discounts=tuple(keys), row_id=str(row["row_id"]))
