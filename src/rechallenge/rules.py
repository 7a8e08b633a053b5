"""The review's decision criteria for ICI rechallenge, separate from the model.

A checklist shown next to the model's predictions: the patient-selection criteria of
Table 1 and the organ- and grade-specific irAE guidance of Table 4 of the review of ICI
rechallenge in advanced solid tumours (Lu & Xie; ``../shared/seeds/000_*.txt``). The
model never reads these items and they never change a prediction.

The criteria are data (``rechallenge/data/criteria.yaml``): each item names the
patient field(s) it reads, its favourable condition, and its source with a verbatim
quote of the review; the judgements made on the review's wording are comments in that
file. Table 1 items (status ``"favourable"`` / ``"unfavourable"`` / ``"unknown"``):

============================ ===================================== ======================
item                         favourable                            fields
============================ ===================================== ======================
``discontinuation_reason``   ``irae`` or ``clinical_decision``     discontinuation_reason
``pfs1``                     PFS1 >= 6 months (6 is favourable)    pfs1_months
``tfi``                      TFI > 6 months (6 is unfavourable)    tfi_months
``irae_resolved``            no prior irAE, or resolved to grade   prior_irae_grade,
                             <= 1 and corticosteroids tapered      irae_resolved_grade,
                                                                   steroids_tapered
``no_high_grade_myocarditis`` no grade >= 3 myocarditis            prior_irae_organ,
                             (unfavourable = contraindication)     prior_irae_grade
``ecog``                     ECOG PS 0-1                           ecog
============================ ===================================== ======================

A field that is absent, ``None``, NaN or a blank string gives ``"unknown"``; it is never
an error. A value that is present but impossible (unknown category, grade outside 0-4,
negative or infinite months, ``prior_irae_organ`` ``"none"`` with a grade above 0, ...)
raises :class:`RulesError` naming the field.

This module imports only the standard library, PyYAML and :mod:`rechallenge.errors`,
so the clinician's command line answers quickly.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .rules_spec import (_CATEGORIES, _FALSE, _FIELD_KINDS, _TRUE, CRITERIA_FILE,
                         DISCONTINUATION_REASONS, IRAE_ORGANS, RECOMMENDATIONS, RULE_NAMES,
                         CriteriaSpec, CriterionSpec, GuidanceSpec, RulesError, SourceRef,
                         Status, load_criteria)

__all__ = [
    "CRITERIA_FILE", "DISCONTINUATION_REASONS", "IRAE_ORGANS", "RECOMMENDATIONS",
    "Assessment", "Criterion", "CriteriaSpec", "CriterionSpec", "Guidance", "GuidanceSpec",
    "RulesError", "SourceRef", "assess", "evaluate_criteria", "irae_guidance",
    "load_criteria",
]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Criterion:
    """One checklist item evaluated for one patient.

    Attributes
    ----------
    id
        Stable identifier of the item in ``criteria.yaml`` (e.g. ``"pfs1"``).
    criterion
        Human-readable statement of the favourable condition.
    status
        ``"favourable"``, ``"unfavourable"`` or ``"unknown"`` (a field is missing).
    source
        Where the item comes from, e.g. ``"Review of ICI rechallenge in solid tumours
        (seed 000), Table 1"``.
    detail
        The value(s) seen and the table's implication for that value.
    """

    id: str
    criterion: str
    status: Status
    source: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready ``{"id", "criterion", "status", "source", "detail"}``."""
        return {"id": self.id, "criterion": self.criterion, "status": self.status,
                "source": self.source, "detail": self.detail}


@dataclass(frozen=True)
class Guidance:
    """Organ- and grade-specific irAE guidance (Table 4 of the review).

    Attributes
    ----------
    organ, grade
        The prior irAE's organ (cohort-contract category) and worst CTCAE grade.
    recommendation
        One of :data:`RECOMMENDATIONS`.
    recurrence_risk
        Table 4's "Recurrence Risk upon Rechallenge" cell, or ``None`` when the table has
        no row for this organ/grade.
    text
        Table 4's recommendation (verbatim), or an explanation citing the review where
        the table has no row.
    source
        Where the guidance comes from (review and table or section).
    """

    organ: str
    grade: int
    recommendation: str
    recurrence_risk: str | None
    text: str
    source: str

    @property
    def contraindicated(self) -> bool:
        """True only for an absolute contraindication (``"contraindicated"``)."""
        return self.recommendation == "contraindicated"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all attributes plus ``contraindicated``."""
        return {"organ": self.organ, "grade": self.grade,
                "recommendation": self.recommendation,
                "recurrence_risk": self.recurrence_risk, "text": self.text,
                "source": self.source, "contraindicated": self.contraindicated}


@dataclass(frozen=True)
class Assessment:
    """The review's checklist for one patient.

    Attributes
    ----------
    criteria
        The Table 1 items, in the order of ``criteria.yaml`` (a tuple: the assessment
        is immutable).
    guidance
        Table 4 guidance for the prior irAE, or ``None`` when its organ or grade is
        unknown.
    contraindicated
        True when the review states an absolute contraindication (grade >= 3
        myocarditis: Table 1 and Table 4). "Generally contraindicated" (grade 3-4
        pneumonitis) is shown by ``guidance`` but is not absolute.
    contraindication_reasons
        One sentence per contraindication, each ending with its source in brackets.
    """

    criteria: tuple[Criterion, ...]
    guidance: Guidance | None
    contraindicated: bool
    contraindication_reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``criteria`` (list of dicts), ``guidance`` (dict or
        ``None``), ``contraindicated``, ``contraindication_reasons``."""
        return {"criteria": [c.to_dict() for c in self.criteria],
                "guidance": None if self.guidance is None else self.guidance.to_dict(),
                "contraindicated": self.contraindicated,
                "contraindication_reasons": list(self.contraindication_reasons)}


# --------------------------------------------------------------------------- patient values


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas.NA / NaT without pandas
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _parse(field: str, value: Any) -> Any:
    """Validated value of one patient field, or ``None`` when it is missing."""
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        value = value.item()
    if _is_missing(value):
        return None
    kind = _FIELD_KINDS[field]
    if kind in _CATEGORIES:
        allowed = _CATEGORIES[kind]
        if not isinstance(value, str):
            raise RulesError(f"expected one of {list(allowed)}, got {value!r}", field=field)
        key = value.strip().lower()
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RulesError(f"unknown category {value!r}{hint}; expected one of "
                             f"{list(allowed)}", field=field)
        return key
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise RulesError(f"expected true/false, got {value!r}", field=field)
    if isinstance(value, bool):
        raise RulesError(f"expected a number, got {value!r}", field=field)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RulesError(f"expected a number, got {value!r}", field=field) from None
    if math.isnan(number):
        return None
    if kind == "grade":
        if not (number.is_integer() and 0 <= number <= 4):
            raise RulesError(f"must be an integer from 0 to 4, got {value!r}", field=field)
        return int(number)
    if not math.isfinite(number) or number < 0:
        raise RulesError(f"months must be finite and >= 0, got {value!r}", field=field)
    return number


def _patient_values(patient: Mapping[str, Any]) -> dict[str, Any]:
    """Parse every field the rules read and check the irAE fields against each other."""
    if not (isinstance(patient, Mapping) or callable(getattr(patient, "get", None))):
        raise RulesError(f"a patient must be a mapping of field -> value (a dict or a "
                         f"pandas row), got {type(patient).__name__}")
    values = {field: _parse(field, patient.get(field)) for field in _FIELD_KINDS}
    organ, grade = values["prior_irae_organ"], values["prior_irae_grade"]
    # Cohort contract: prior_irae_organ is "none" if and only if prior_irae_grade is 0.
    if organ == "none" and grade is None:
        values["prior_irae_grade"] = grade = 0
    elif grade == 0 and organ is None:
        values["prior_irae_organ"] = organ = "none"
    _check_irae_pair(organ, grade)
    resolved = values["irae_resolved_grade"]
    if resolved is not None and grade is not None and resolved > grade:
        raise RulesError(f"{resolved} is worse than prior_irae_grade {grade} (the worst "
                         "grade of the prior irAE)", field="irae_resolved_grade")
    return values


def _check_irae_pair(organ: str | None, grade: int | None) -> None:
    if organ == "none" and grade not in (None, 0):
        raise RulesError(f"{grade} but prior_irae_organ is 'none' ('none' if and only if "
                         "grade 0)", field="prior_irae_grade")
    if organ not in (None, "none") and grade == 0:
        raise RulesError(f"{organ!r} but prior_irae_grade is 0 ('none' if and only if "
                         "grade 0)", field="prior_irae_organ")


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- rules


def _implication(spec: CriterionSpec, status: Status) -> str:
    row = spec.table_row
    if status == "favourable" and row.get("favourable"):
        return f"{spec.source.where}: {row['favourable']}"
    if status == "unfavourable" and row.get("unfavourable"):
        return f"{spec.source.where}: {row.get('unfavourable_criterion', '')}: " \
               f"{row['unfavourable']}"
    return ""


def _rule_irae_resolved(spec: CriterionSpec, v: Mapping[str, Any]) -> tuple[Status, str]:
    grade, resolved, tapered = (v["prior_irae_grade"], v["irae_resolved_grade"],
                                v["steroids_tapered"])
    if grade == 0:
        return "favourable", "no prior irAE"
    seen = [f"{f} = {v[f]}" for f in spec.fields if v[f] is not None]
    seen_text = ", ".join(seen) if seen else "no irAE resolution data"
    if (resolved is not None and resolved >= 2) or tapered is False:
        if grade is not None and grade >= 3 and resolved is not None and resolved >= 2:
            note = _implication(spec, "unfavourable")  # "Other unresolved >=Grade 3 irAEs"
        else:
            note = f"{spec.source.where} prerequisite not met: {spec.source.quote}"
        return "unfavourable", f"{seen_text}; {note}"
    if resolved is not None and resolved <= 1 and tapered is True:
        return "favourable", f"{seen_text}; {_implication(spec, 'favourable')}"
    missing = [f for f in spec.fields if v[f] is None]
    return "unknown", f"{seen_text}; missing {', '.join(missing)}"


def _rule_no_high_grade_myocarditis(spec: CriterionSpec,
                                    v: Mapping[str, Any]) -> tuple[Status, str]:
    organ, grade = v["prior_irae_organ"], v["prior_irae_grade"]
    if organ == "myocarditis" and grade is not None and grade >= 3:
        return ("unfavourable", f"prior_irae_organ = myocarditis, prior_irae_grade = "
                f"{grade}; {_implication(spec, 'unfavourable')}")
    if grade == 0:
        return "favourable", "no prior irAE"
    if grade is not None and grade < 3:
        return "favourable", f"prior_irae_grade = {grade} (< 3)"
    if organ is not None and organ != "myocarditis":
        return "favourable", f"prior_irae_organ = {organ}"
    missing = [f for f in spec.fields if v[f] is None]
    return "unknown", f"missing {', '.join(missing)}"


_RULES: dict[str, Callable[[CriterionSpec, Mapping[str, Any]], tuple[Status, str]]] = {
    "irae_resolved": _rule_irae_resolved,
    "no_high_grade_myocarditis": _rule_no_high_grade_myocarditis,
}
assert tuple(_RULES) == RULE_NAMES  # the criteria file is checked against RULE_NAMES


def _evaluate(spec: CriterionSpec, values: Mapping[str, Any]) -> Criterion:
    if spec.op == "rule":
        status, detail = _RULES[spec.value](spec, values)
    else:
        field = spec.fields[0]
        value = values[field]
        if value is None:
            status, detail = "unknown", f"{field} missing"
        else:
            ok = {">=": lambda x: x >= spec.value, ">": lambda x: x > spec.value,
                  "<=": lambda x: x <= spec.value,
                  "in": lambda x: x in spec.value}[spec.op](value)
            status = "favourable" if ok else "unfavourable"
            detail = f"{field} = {_fmt(value)}; {_implication(spec, status)}"
    return Criterion(id=spec.id, criterion=spec.text, status=status,
                     source=str(spec.source), detail=detail.rstrip("; "))


# --------------------------------------------------------------------------- public API


def evaluate_criteria(patient: Mapping[str, Any]) -> list[Criterion]:
    """Evaluate the review's Table 1 patient-selection criteria for one patient.

    Parameters
    ----------
    patient
        Field -> value (a dict, a pandas row, ...). Fields read:
        ``discontinuation_reason`` (``progression`` | ``irae`` | ``clinical_decision``),
        ``pfs1_months``, ``tfi_months`` (>= 0), ``ecog`` (0-4), ``prior_irae_organ``
        (cohort-contract organ), ``prior_irae_grade`` (0-4, worst grade),
        ``irae_resolved_grade`` (0-4, current grade), ``steroids_tapered`` (bool: stopped
        or tapered to <= 10 mg/day prednisone-equivalent, review section 3.4). Other
        fields are ignored; absent/None/NaN/blank fields give status ``"unknown"``.

    Returns
    -------
    list of Criterion
        One per Table 1 item, in the order of ``criteria.yaml``.

    Raises
    ------
    RulesError
        For an impossible value (unknown category, grade outside 0-4, negative months,
        ``prior_irae_organ`` ``"none"`` with a grade > 0, ``irae_resolved_grade`` worse
        than ``prior_irae_grade``); the message names the field.
    """
    values = _patient_values(patient)
    return [_evaluate(spec, values) for spec in load_criteria().criteria]


def irae_guidance(prior_irae_organ: str, prior_irae_grade: int) -> Guidance:
    """Table 4's organ- and grade-specific rechallenge guidance for a prior irAE.

    Parameters
    ----------
    prior_irae_organ
        One of :data:`IRAE_ORGANS` (case and surrounding spaces ignored).
    prior_irae_grade
        Worst CTCAE grade of that irAE, 0-4 (0 if and only if the organ is ``"none"``).

    Returns
    -------
    Guidance
        ``recommendation`` is one of :data:`RECOMMENDATIONS`. Grade 3-4 myocarditis is
        ``"contraindicated"``. Organs without a row in Table 4 (``renal``, ``other``) get
        ``"no organ-specific guidance"``; myocarditis grade 1-2, which Table 4 does not
        cover, gets ``"no grade-specific guidance"``.

    Raises
    ------
    RulesError
        For an unknown organ, a grade outside 0-4, a missing value, or an organ/grade
        pair that contradicts the cohort contract.
    """
    organ = _parse("prior_irae_organ", prior_irae_organ)
    grade = _parse("prior_irae_grade", prior_irae_grade)
    if organ is None:
        raise RulesError("required for irAE guidance", field="prior_irae_organ")
    if grade is None:
        raise RulesError("required for irAE guidance", field="prior_irae_grade")
    _check_irae_pair(organ, grade)
    for spec in load_criteria().guidance:
        if spec.organ == organ and grade in spec.grades:
            return Guidance(organ=organ, grade=grade, recommendation=spec.recommendation,
                            recurrence_risk=spec.recurrence_risk, text=spec.text,
                            source=str(spec.source))
    raise AssertionError(f"no guidance for {organ!r} grade {grade}")  # load_criteria checks


def assess(patient: Mapping[str, Any]) -> Assessment:
    """The review's checklist for one patient: Table 1 criteria and Table 4 guidance.

    Parameters
    ----------
    patient
        As for :func:`evaluate_criteria`.

    Returns
    -------
    Assessment
        ``contraindicated`` is True when the review states an absolute contraindication
        (a Table 1 item marked ``contraindication`` is unfavourable, or the Table 4
        recommendation is ``"contraindicated"``); each reason ends with its source.

    Raises
    ------
    RulesError
        As for :func:`evaluate_criteria`.
    """
    values = _patient_values(patient)
    specs = load_criteria().criteria
    criteria = tuple(_evaluate(spec, values) for spec in specs)
    organ, grade = values["prior_irae_organ"], values["prior_irae_grade"]
    guidance = None if organ is None or grade is None else irae_guidance(organ, grade)
    reasons = [f"{c.detail} [{c.source}]" for spec, c in zip(specs, criteria)
               if spec.contraindication and c.status == "unfavourable"]
    if guidance is not None and guidance.contraindicated:
        reasons.append(f"{guidance.organ} grade {guidance.grade}: {guidance.text} "
                       f"[{guidance.source}]")
    return Assessment(criteria=criteria, guidance=guidance, contraindicated=bool(reasons),
                      contraindication_reasons=tuple(reasons))
