"""The criteria file of :mod:`rechallenge.rules`: its constants, errors and loader.

``rechallenge/data/criteria.yaml`` holds the review's Table 1 items and Table 4 guidance
as data; :func:`load_criteria` reads and checks its structure once (the verbatim quotes
are checked against the seed text in the tests, not at run time). Imports only the
standard library, PyYAML and :mod:`rechallenge.errors`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import RechallengeError

#: The bundled criteria file (shipped inside the package, like the demo cohort).
CRITERIA_FILE: Path = Path(__file__).resolve().parent / "data" / "criteria.yaml"

#: Categories of the cohort contract (kept equal to ``rechallenge.cohort.CATEGORIES`` by
#: a test; not imported from there, because that module imports pandas).
DISCONTINUATION_REASONS: tuple[str, ...] = ("progression", "irae", "clinical_decision")
IRAE_ORGANS: tuple[str, ...] = ("none", "colitis", "pneumonitis", "hepatitis", "myocarditis",
                                "endocrine", "dermatologic", "renal", "other")

#: Recommendation categories of :class:`Guidance` (derived from Table 4's wording; see
#: ``criteria.yaml``). Only ``"contraindicated"`` is an absolute contraindication.
RECOMMENDATIONS: tuple[str, ...] = (
    "rechallenge possible", "rechallenge with caution", "generally contraindicated",
    "contraindicated", "no grade-specific guidance", "no organ-specific guidance",
    "not applicable",
)

Status = Literal["favourable", "unfavourable", "unknown"]

#: Patient fields read by the rules, and their kind.
_FIELD_KINDS: dict[str, str] = {
    "discontinuation_reason": "reason",
    "pfs1_months": "months",
    "tfi_months": "months",
    "ecog": "grade",
    "prior_irae_organ": "organ",
    "prior_irae_grade": "grade",
    "irae_resolved_grade": "grade",
    "steroids_tapered": "bool",
}
_CATEGORIES = {"reason": DISCONTINUATION_REASONS, "organ": IRAE_ORGANS}
_OPS = (">=", ">", "<=", "in", "rule")
#: Named rules (``op: rule``) for items a single comparison cannot express; each is
#: implemented in :mod:`rechallenge.rules`.
RULE_NAMES: tuple[str, ...] = ("irae_resolved", "no_high_grade_myocarditis")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}



class RulesError(RechallengeError):
    """A patient value the rules cannot accept, or a malformed criteria file.

    Parameters
    ----------
    message
        What is wrong (the offending value may be quoted).
    field
        The patient field at fault, when there is one; the message then starts with
        ``"patient field '<field>': "``.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        prefix = f"patient field {field!r}: " if field else "criteria: "
        super().__init__(prefix + message)



# --------------------------------------------------------------------------- specification


@dataclass(frozen=True)
class SourceRef:
    """Where an item comes from: review, table or section, and a verbatim quote."""

    review: str
    label: str
    file: str
    where: str
    quote: str
    is_table: bool

    def __str__(self) -> str:
        return f"{self.label}, {self.where}"


@dataclass(frozen=True)
class CriterionSpec:
    """One Table 1 item as read from ``criteria.yaml``."""

    id: str
    text: str
    fields: tuple[str, ...]
    op: str
    value: Any
    contraindication: bool
    source: SourceRef
    table_row: Mapping[str, str]


@dataclass(frozen=True)
class GuidanceSpec:
    """One Table 4 entry (organ, grade range) as read from ``criteria.yaml``."""

    organ: str
    grades: tuple[int, ...]
    recommendation: str
    recurrence_risk: str | None
    text: str
    source: SourceRef
    row: str | None
    table_grade: str | None


@dataclass(frozen=True)
class CriteriaSpec:
    """The whole criteria file: Table 1 items and Table 4 guidance entries."""

    criteria: tuple[CriterionSpec, ...]
    guidance: tuple[GuidanceSpec, ...]


def _need(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise RulesError(f"{CRITERIA_FILE.name}: {where}: missing key {key!r}")
    value = mapping[key]
    if not isinstance(value, kind):
        raise RulesError(f"{CRITERIA_FILE.name}: {where}: {key!r} has the wrong type "
                         f"({type(value).__name__})")
    return value


def _source(raw: Any, reviews: Mapping[str, Any], where: str,
            default_quote: str | None = None) -> SourceRef:
    review = _need(raw, "review", str, where)
    if review not in reviews:
        raise RulesError(f"{CRITERIA_FILE.name}: {where}: unknown review {review!r}")
    if ("table" in raw) == ("section" in raw):
        raise RulesError(f"{CRITERIA_FILE.name}: {where}: source needs exactly one of "
                         "'table' or 'section'")
    is_table = "table" in raw
    place = _need(raw, "table" if is_table else "section", str, where)
    quote = raw.get("quote", default_quote)
    if not isinstance(quote, str) or not quote.strip():
        raise RulesError(f"{CRITERIA_FILE.name}: {where}: source needs a verbatim 'quote'")
    info = reviews[review]
    return SourceRef(review=review, label=_need(info, "label", str, f"review {review}"),
                     file=_need(info, "file", str, f"review {review}"), where=place,
                     quote=quote, is_table=is_table)


def _criterion_spec(raw: Any, reviews: Mapping[str, Any], seen: set[str]) -> CriterionSpec:
    cid = _need(raw, "id", str, "criteria")
    where = f"criterion {cid!r}"
    if cid in seen:
        raise RulesError(f"{CRITERIA_FILE.name}: duplicate criterion id {cid!r}")
    seen.add(cid)
    fields = tuple(_need(raw, "fields", list, where))
    unknown = [f for f in fields if f not in _FIELD_KINDS]
    if not fields or unknown:
        raise RulesError(f"{CRITERIA_FILE.name}: {where}: unknown or no fields {unknown}")
    fav = _need(raw, "favourable", Mapping, where)
    op = _need(fav, "op", str, where)
    value = fav.get("value")
    if op not in _OPS:
        raise RulesError(f"{CRITERIA_FILE.name}: {where}: unknown op {op!r}")
    if op == "rule":
        if value not in RULE_NAMES:
            raise RulesError(f"{CRITERIA_FILE.name}: {where}: unknown rule {value!r}")
    elif len(fields) != 1:
        raise RulesError(f"{CRITERIA_FILE.name}: {where}: op {op!r} reads exactly one field")
    elif op == "in":
        allowed = _CATEGORIES.get(_FIELD_KINDS[fields[0]], ())
        if not isinstance(value, list) or not set(value) <= set(allowed):
            raise RulesError(f"{CRITERIA_FILE.name}: {where}: 'in' needs categories of "
                             f"{fields[0]}")
        value = tuple(value)
    elif not isinstance(value, (int, float)) or isinstance(value, bool):
        raise RulesError(f"{CRITERIA_FILE.name}: {where}: op {op!r} needs a number")
    table_row = raw.get("table_row", {})
    if not isinstance(table_row, Mapping) or not all(
            isinstance(v, str) for v in table_row.values()):
        raise RulesError(f"{CRITERIA_FILE.name}: {where}: 'table_row' must map to strings")
    return CriterionSpec(id=cid, text=_need(raw, "text", str, where), fields=fields, op=op,
                         value=value, contraindication=bool(raw.get("contraindication")),
                         source=_source(_need(raw, "source", Mapping, where), reviews, where),
                         table_row=dict(table_row))


def _guidance_specs(raw: Any, reviews: Mapping[str, Any]) -> tuple[GuidanceSpec, ...]:
    if not isinstance(raw, Mapping) or set(raw) != set(IRAE_ORGANS):
        raise RulesError(f"{CRITERIA_FILE.name}: 'guidance' must have exactly the organs "
                         f"{list(IRAE_ORGANS)}")
    specs = []
    for organ in IRAE_ORGANS:
        covered: list[int] = []
        for i, entry in enumerate(raw[organ] or ()):
            where = f"guidance {organ!r} entry {i + 1}"
            grades = tuple(_need(entry, "grades", list, where))
            recommendation = _need(entry, "recommendation", str, where)
            if recommendation not in RECOMMENDATIONS:
                raise RulesError(f"{CRITERIA_FILE.name}: {where}: unknown recommendation "
                                 f"{recommendation!r}")
            text = _need(entry, "text", str, where).strip()
            risk = entry.get("recurrence_risk")
            src = _need(entry, "source", Mapping, where)
            # A Table 4 row without its own quote is quoted by its recommendation text.
            source = _source(src, reviews, where,
                             default_quote=text if "table" in src else None)
            covered.extend(grades)
            specs.append(GuidanceSpec(organ=organ, grades=grades,
                                      recommendation=recommendation,
                                      recurrence_risk=risk if isinstance(risk, str) else None,
                                      text=" ".join(text.split()), source=source,
                                      row=src.get("row"),
                                      table_grade=entry.get("table_grade")))
        expected = [0] if organ == "none" else [1, 2, 3, 4]
        if sorted(covered) != expected:
            raise RulesError(f"{CRITERIA_FILE.name}: guidance {organ!r} must cover grades "
                             f"{expected} exactly once, covers {sorted(covered)}")
    return tuple(specs)


@functools.cache
def load_criteria() -> CriteriaSpec:
    """Read and check the bundled ``criteria.yaml`` (once per process).

    Returns
    -------
    CriteriaSpec
        The Table 1 items and the Table 4 guidance entries. The quotes are *not* checked
        against the review here (the package works without ``../shared``); the tests do.

    Raises
    ------
    RulesError
        If the file is malformed (unknown field, op, rule or recommendation; an organ of
        the cohort contract without guidance, or grades covered twice or not at all).
    """
    with open(CRITERIA_FILE, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    reviews = _need(raw, "reviews", Mapping, "top level")
    seen: set[str] = set()
    criteria = tuple(_criterion_spec(item, reviews, seen)
                     for item in _need(raw, "criteria", list, "top level"))
    return CriteriaSpec(criteria=criteria, guidance=_guidance_specs(raw.get("guidance"),
                                                                    reviews))
