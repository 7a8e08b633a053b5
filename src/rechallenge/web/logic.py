"""The web page's logic without a web server: form → patient → numbers.

Everything the page shows comes from :func:`compute`; Shiny only moves values between
the browser and these functions, so they are tested without a browser.

* :func:`patient_from_form` turns the form's raw values (strings, ``""`` = not given)
  into one patient of the cohort contract plus the two fields only the review's
  checklist reads (``irae_resolved_grade``, ``steroids_tapered``). A value it cannot
  accept raises :class:`FormError`, whose message starts with the field's label as the
  form shows it (e.g. ``"NLR: must be greater than 0, got '0'"``).
* :func:`compute` / :func:`_report_numbers` make the patient's report with
  :func:`rechallenge.report.build_reports` (the numbers of ``predict`` + ``summarise``,
  the checklist of :func:`rechallenge.rules.assess`), so the page shows what the text,
  HTML and PDF reports show.
* :func:`format_quantity` is the one place the page turns numbers into text, with the
  reports' rounding (:mod:`rechallenge.report_text`).

No patient value is ever logged or printed here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..cohort import CATEGORIES
from ..errors import CohortError, RechallengeError
from ..report_text import months, per100
from ..rules import RulesError, assess

PATIENT_ID = "patient"
SEED = 0
CI = 0.95

#: Form input id -> label shown on the page (and used in error messages).
FIELD_LABELS: dict[str, str] = {
    "ecog": "ECOG performance status",
    "pfs1_months": "PFS1 (months)",
    "tfi_months": "Treatment-free interval (months)",
    "liver_mets": "Liver metastases",
    "nlr": "NLR",
    "discontinuation_reason": "Reason for stopping the first course",
    "tumour_type": "Tumour type",
    "regimen_class": "Rechallenge regimen",
    "prior_irae_grade": "Worst irAE grade on the first course",
    "prior_irae_organ": "Organ of that irAE",
    "irae_resolved_grade": "irAE resolved to grade",
    "steroids_tapered": "Corticosteroids stopped or tapered (≤ 10 mg/day prednisone)",
    "centre": "Centre",
}

#: Choices of the select inputs: value -> label ("" = not known / not given).
CHOICES: dict[str, dict[str, str]] = {
    "ecog": {"": "unknown", **{str(g): str(g) for g in range(5)}},
    "liver_mets": {"": "unknown", "1": "yes", "0": "no"},
    "discontinuation_reason": {"progression": "progression", "irae": "immune-related adverse event",
                               "clinical_decision": "clinical decision (e.g. completed course)"},
    "tumour_type": {"nsclc": "NSCLC", "melanoma": "melanoma", "rcc": "renal cell carcinoma",
                    "gastric": "gastric", "hcc": "hepatocellular carcinoma",
                    "escc": "oesophageal squamous cell carcinoma", "sclc": "SCLC",
                    "urothelial": "urothelial", "other": "other"},
    "regimen_class": {"pd1_pdl1": "anti-PD-1/PD-L1", "ctla4_containing": "CTLA-4-containing"},
    "prior_irae_grade": {str(g): ("0 (no irAE)" if g == 0 else str(g)) for g in range(5)},
    "prior_irae_organ": {o: o for o in CATEGORIES["prior_irae_organ"]},
    "irae_resolved_grade": {"": "not given", **{str(g): str(g) for g in range(5)}},
    "steroids_tapered": {"": "not given", "yes": "yes", "no": "no"},
}
#: Months fields and NLR are typed (text boxes); "" = unknown.
NUMBER_FIELDS = ("pfs1_months", "tfi_months", "nlr")


#: The quantities on the page, in order, with their headings.
QUANTITY_LABELS: dict[str, str] = {
    "pfs2_median_months": "Median PFS2",
    "pfs2_6mo": "PFS2 at 6 months",
    "pfs2_12mo": "PFS2 at 12 months",
    "rmst_12mo": "Mean PFS2 time within 12 months (RMST)",
    "irae_any": "irAE recurrence, any grade",
    "irae_grade3plus": "irAE recurrence, grade ≥ 3",
}
_MONTHS = ("pfs2_median_months", "rmst_12mo")


class FormError(RechallengeError):
    """A form value the page cannot accept; the message starts with the field's label."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.label = FIELD_LABELS.get(field, field)
        super().__init__(f"{self.label}: {message}")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _number(field: str, raw: Any) -> float:
    text = _text(raw)
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")  # decimal comma
    try:
        x = float(text)
    except ValueError:
        raise FormError(field, f"{_text(raw)[:20]!r} is not a number") from None
    if not math.isfinite(x):
        raise FormError(field, f"{_text(raw)[:20]!r} is not a finite number")
    if field == "nlr" and x <= 0:
        raise FormError(field, f"must be greater than 0, got {_text(raw)!r}")
    if x < 0:
        raise FormError(field, f"months must not be negative, got {_text(raw)!r}")
    return x


def _choice(field: str, raw: Any, choices: Mapping[str, str] | None = None) -> str:
    text = _text(raw)
    allowed = CHOICES[field] if choices is None else choices
    if text not in allowed:
        raise FormError(field, f"choose one of {', '.join(repr(v) for v in allowed if v)}")
    return text


def patient_from_form(form: Mapping[str, Any], *, centres: tuple[str, ...] = ()) -> dict[str, Any]:
    """One patient from the form's raw values.

    Parameters
    ----------
    form
        Input id -> raw value (strings as the browser sends them; ``""`` or ``None`` =
        not known). Ids are the keys of :data:`FIELD_LABELS`.
    centres
        Centre names the fit knows, when the model has centre effects (``centre`` is
        then read from the form; anything else is an unknown centre).

    Returns
    -------
    dict
        Contract fields (numbers as float, NaN = unknown; categories as text),
        ``irae_resolved_grade`` (int or None), ``steroids_tapered`` (bool or None) and,
        with ``centres``, ``centre``. The irAE follow-up fields are None without a
        prior irAE.

    Raises
    ------
    FormError
        For the first value that cannot be accepted, naming the field.
    """
    p: dict[str, Any] = {}
    ecog = _choice("ecog", form.get("ecog"))
    p["ecog"] = float(ecog) if ecog else math.nan
    for field in NUMBER_FIELDS[:2]:
        p[field] = _number(field, form.get(field)) if _text(form.get(field)) else math.nan
    liver = _choice("liver_mets", form.get("liver_mets"))
    p["liver_mets"] = float(liver) if liver else math.nan
    p["nlr"] = _number("nlr", form.get("nlr")) if _text(form.get("nlr")) else math.nan
    for field in ("discontinuation_reason", "tumour_type", "regimen_class"):
        p[field] = _choice(field, form.get(field))
    grade = int(_choice("prior_irae_grade", form.get("prior_irae_grade")))
    organ = _choice("prior_irae_organ", form.get("prior_irae_organ"))
    if grade == 0 and organ != "none":
        raise FormError("prior_irae_organ", f"{organ!r} was chosen but the worst irAE grade is 0; "
                        "choose 'none', or give the grade of the irAE")
    if grade > 0 and organ == "none":
        raise FormError("prior_irae_organ", f"choose the organ of the grade {grade} irAE")
    p["prior_irae_grade"], p["prior_irae_organ"] = float(grade), organ
    resolved = _choice("irae_resolved_grade", form.get("irae_resolved_grade"))
    tapered = _choice("steroids_tapered", form.get("steroids_tapered"))
    if grade == 0:  # follow-up of an irAE that did not happen: not applicable
        p["irae_resolved_grade"], p["steroids_tapered"] = None, None
    else:
        if resolved and int(resolved) > grade:
            raise FormError("irae_resolved_grade", f"grade {resolved} is worse than the worst "
                            f"grade of the irAE ({grade})")
        p["irae_resolved_grade"] = int(resolved) if resolved else None
        p["steroids_tapered"] = {"": None, "yes": True, "no": False}[tapered]
    if centres:
        centre = _text(form.get("centre"))
        p["centre"] = centre if centre in centres else "unknown"
    return p


def patient_record(model: Any, patient: Mapping[str, Any]) -> dict[str, Any]:
    """The patient as :func:`rechallenge.report.build_reports` takes it.

    Declared ``extra`` covariates of the fit, which the form does not ask for, are blank
    and so averaged over (the prediction says so in its warnings).
    """
    from ..predict import model_spec

    record: dict[str, Any] = {"patient_id": PATIENT_ID, **patient}
    for extra in model_spec(model).extra:
        record[extra.name] = math.nan
    return record


@dataclass(frozen=True)
class WebResult:
    """What one press of the button shows.

    ``numbers`` is :meth:`rechallenge.report.PatientReport.to_dict` (full floats);
    ``report`` the :class:`~rechallenge.report.PatientReport` (curve quantiles for the
    figure).
    """

    numbers: dict[str, Any]
    report: Any


def compute(model: Any, patient: Mapping[str, Any], *, ci: float = CI, seed: int = SEED) -> WebResult:
    """Predict one patient with :func:`rechallenge.report.build_reports` (the same numbers
    as the text, HTML and PDF reports and as ``predict`` + ``summarise``).

    Raises
    ------
    FormError
        When the model or the checklist rejects a value (the field is named).
    """
    from ..report import build_reports

    try:
        assess(patient)  # checklist errors first: they name the form field
    except RulesError as exc:
        raise FormError(exc.field or "form", str(exc).split(": ", 1)[-1]) from None
    try:
        (report,) = build_reports(model, patient_record(model, patient), ci=ci, seed=seed)
    except CohortError as exc:
        raise FormError(exc.column or "form", str(exc).split(": ", 1)[-1]) from None
    return WebResult(numbers=report.to_dict(), report=report)


def _report_numbers(model: Any, patient: Mapping[str, Any], *, ci: float = CI, seed: int = SEED
                    ) -> dict[str, Any]:
    """The page's numbers for one patient: ``build_reports(...)[0].to_dict()``.

    ``pfs2_median_months`` … ``irae_grade3plus`` each ``{"estimate", "lower",
    "upper"}`` (posterior median and central ``ci`` interval; ``None`` = median not
    reached by the horizon) plus ``not_reached_probability`` for the median;
    ``reliable``; ``warnings``; ``criteria``; ``contraindicated``;
    ``contraindication_reasons``; ``local_share``; ``source``; … (see
    :meth:`rechallenge.report.PatientReport.to_dict`).
    """
    return compute(model, patient, ci=ci, seed=seed).numbers


# --------------------------------------------------------------------------- text


def _percent(x: float | None) -> str:
    return "–" if x is None else f"{per100(x)}%"


def _months(x: float | None) -> str:
    return "not reached" if x is None else months(x)


def format_quantity(quantity: str, entry: Mapping[str, Any]) -> str:
    """The text shown for one quantity, rounded as in every report
    (:func:`rechallenge.report_text.display_numbers`: whole percent half up, months to
    one decimal): e.g. ``"42% (30%–55%)"`` or ``"5.3 months (1.2–not reached)"``
    (``None`` = not reached)."""
    est, lo, hi = entry["estimate"], entry["lower"], entry["upper"]
    if quantity in _MONTHS:
        unit = "" if est is None else " months"
        return f"{_months(est)}{unit} ({_months(lo)}–{_months(hi)})"
    return f"{_percent(est)} ({_percent(lo)}–{_percent(hi)})"


def data_value(x: float | None) -> str:
    """A number for a ``data-*`` attribute: ``repr`` (round-trips exactly); ``""`` = None."""
    return "" if x is None else repr(float(x))


def icon_counts(numbers: Mapping[str, Any]) -> tuple[int, int]:
    """Of 100 patients like this: (any-grade irAE recurrence, of which grade ≥ 3), from
    the posterior medians, rounded as in the reports (:func:`rechallenge.report_text.per100`)."""
    severe = per100(numbers["irae_grade3plus"]["estimate"])
    return max(per100(numbers["irae_any"]["estimate"]), severe), severe
