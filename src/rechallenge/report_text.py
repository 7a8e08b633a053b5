"""Text of a patient report: rounding, sentences (shared by text, HTML and PDF), plain text.

Everything here reads the JSON-ready dict of :meth:`rechallenge.report.PatientReport.to_dict`,
so every renderer shows the same numbers, rounded once by :func:`display_numbers`:
probabilities as whole numbers of patients per 100 (half up), months to one decimal,
local shares as whole percent. Standard library only.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any, Mapping

QUANTITIES = ("pfs2_median_months", "pfs2_6mo", "pfs2_12mo", "rmst_12mo", "irae_any", "irae_grade3plus")
PROBABILITIES = ("pfs2_6mo", "pfs2_12mo", "irae_any", "irae_grade3plus")
RULES_ONLY = ("irae_resolved_grade", "steroids_tapered")


def per100(p: float) -> int:
    """A probability as a whole number of patients out of 100 (half rounds up)."""
    return int(math.floor(100.0 * p + 0.5))


def months(x: float) -> str:
    """Months to one decimal."""
    return f"{math.floor(10.0 * x + 0.5) / 10:.1f}"


def display_numbers(d: Mapping[str, Any]) -> dict[str, dict[str, str | None]]:
    """The rounded strings every renderer shows, from :meth:`PatientReport.to_dict`.

    Probabilities -> whole numbers per 100 (:func:`per100`); months -> one decimal
    (:func:`months`); ``None`` (not reached) stays ``None``; the median's
    ``not_reached_probability`` per 100; ``local_share`` as whole percent.
    """
    out: dict[str, dict[str, str | None]] = {}
    for q in QUANTITIES:
        if q not in d:
            continue
        fmt = (lambda v: str(per100(v))) if q in PROBABILITIES else months
        out[q] = {k: (None if d[q][k] is None else fmt(d[q][k])) for k in ("estimate", "lower", "upper")}
        if "not_reached_probability" in d[q]:
            out[q]["not_reached_probability"] = str(per100(d[q]["not_reached_probability"]))
    out["local_share"] = {q: (None if v is None else str(per100(v))) for q, v in d.get("local_share", {}).items()}
    return out


LABELS = {
    "tumour_type": {"nsclc": "non-small-cell lung cancer", "melanoma": "melanoma",
                    "rcc": "renal cell carcinoma", "gastric": "gastric cancer",
                    "hcc": "hepatocellular carcinoma", "escc": "oesophageal squamous cell carcinoma",
                    "sclc": "small-cell lung cancer", "urothelial": "urothelial carcinoma",
                    "other": "other solid tumour"},
    "discontinuation_reason": {"progression": "progression", "irae": "an irAE",
                               "clinical_decision": "a clinical decision (e.g. course completed)"},
    "regimen_class": {"pd1_pdl1": "PD-1/PD-L1 inhibitor", "ctla4_containing": "CTLA-4-containing regimen"},
}
STATUS_MARK = {"favourable": "[+]", "unfavourable": "[-]", "unknown": "[?]"}
CAVEATS = (
    "The evidence is retrospective and observational (two narrative reviews of mostly small, "
    "single-centre cohorts): selection bias and confounding are likely.",
    "Model assumptions: proportional hazards on a Weibull baseline; the literature hazard and odds "
    "ratios are combined as independent effects. Most are univariable estimates, and summing them "
    "can overstate the risk of a patient with several adverse factors.",
    "These are estimates for patients like this one, not a prediction for this person, and they do "
    "not replace clinical judgement or the treating team's decision.",
)


def _fmt_value(key: str, v: Any) -> str:
    if v is None:
        return "not given (averaged over)"
    if key in LABELS:
        return LABELS[key].get(str(v), str(v))
    if key in ("liver_mets", "steroids_tapered"):
        return "yes" if str(v).strip().lower() in ("1", "1.0", "true", "yes", "y") else "no"
    return f"{v:g}" if isinstance(v, float) else str(v)


_INPUT_NAMES = {"tumour_type": "Tumour", "ecog": "ECOG performance status",
                "pfs1_months": "PFS on the first ICI course (months)",
                "tfi_months": "treatment-free interval (months)", "liver_mets": "liver metastases",
                "nlr": "NLR", "discontinuation_reason": "first course stopped because of",
                "regimen_class": "rechallenge regimen", "centre": "centre",
                "irae_resolved_grade": "prior irAE now at grade", "steroids_tapered": "corticosteroids tapered"}


def describe_inputs(inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs describing a patient's values, in display order."""
    out = []
    for k, v in inputs.items():
        if k == "prior_irae_grade" or (k in RULES_ONLY and v is None) or (k == "centre" and v in (None, "unknown")):
            continue
        if k == "prior_irae_organ":
            grade = inputs.get("prior_irae_grade")
            text = "none" if v == "none" else f"{_fmt_value(k, v)}, grade {_fmt_value('prior_irae_grade', grade)}"
            out.append(("prior irAE", text))
        else:
            out.append((_INPUT_NAMES.get(k, k), _fmt_value(k, v)))
    return out


def _interval(lo: str | None, hi: str | None, horizon: str) -> str:
    return f"{lo}–{hi}" if hi is not None else f"{lo} to more than {horizon} months"


def sections(d: Mapping[str, Any]) -> dict[str, Any]:
    """The sentences of a report (shared by text, HTML and PDF), from :meth:`PatientReport.to_dict`."""
    n = display_numbers(d)
    ci = f"{100 * d['ci']:g}%"
    hz = f"{d['horizon_months']:g}"
    out: dict[str, Any] = {"title": f"ICI rechallenge report — {d['patient_id']}", "banners": []}
    if not d["reliable"]:
        out["banners"].append("UNRELIABLE: the fit did not pass its convergence checks (R-hat, ESS, "
                              "divergences). Do not use these numbers for decisions.")
    if d["contraindicated"]:
        out["banners"] += [f"CONTRAINDICATED according to the review: {r}" for r in d["contraindication_reasons"]]
    out["patient"] = describe_inputs(d["inputs"])
    out["patient_line"] = "; ".join(f"{k}: {v}" for k, v in out["patient"])
    m = n["pfs2_median_months"]
    if m["estimate"] is None:
        lower = "" if m["lower"] is None else f"; {ci} credible interval {m['lower']} to more than {hz} months"
        median = (f"Median PFS2: not reached within {hz} months (probability {m['not_reached_probability']} "
                  f"in 100 that it lies beyond {hz} months{lower}).")
    else:
        median = f"Median PFS2: {m['estimate']} months ({_interval(m['lower'], m['upper'], hz)})."
    p6, p12, r = n["pfs2_6mo"], n["pfs2_12mo"], n["rmst_12mo"]
    out["pfs2"] = [
        median,
        f"Of 100 patients like this, about {p6['estimate']} ({p6['lower']}–{p6['upper']}) would be free of "
        f"progression at 6 months, and about {p12['estimate']} ({p12['lower']}–{p12['upper']}) at 12 months.",
        f"Over the first 12 months they would be free of progression for {r['estimate']} months on "
        f"average ({r['lower']}–{r['upper']}).",
    ]
    out["irae"] = []
    if "irae_any" in n:
        a, g = n["irae_any"], n["irae_grade3plus"]
        out["irae"].append(f"Of 100 patients like this, about {a['estimate']} ({a['lower']}–{a['upper']}) would "
                           f"have an irAE again, about {g['estimate']} ({g['lower']}–{g['upper']}) of grade 3 or higher.")
    ref = display_numbers(d["reference"])
    rm = ref["pfs2_median_months"]
    ref_median = (f"median not reached within {hz} months" if rm["estimate"] is None
                  else f"median {rm['estimate']} months")
    out["reference"] = ("For comparison, a patient with the same tumour, regimen and prior irAE but every "
                        "favourable factor (ECOG 0, PFS1 12 months, treatment-free interval 12 months, no liver "
                        "metastases, NLR 2.0, first course stopped by clinical decision): about "
                        f"{ref['pfs2_6mo']['estimate']} of 100 free of progression at 6 months, {ref_median}.")
    out["intervals"] = (f"Numbers in brackets are {ci} credible intervals: given the model and the evidence, "
                        f"the value lies in that range with probability {ci}.")
    if d["source_kind"] == "literature":
        out["source"] = ("Source: the literature model — draws from priors built from the published evidence; "
                         "no local data, so every estimate comes from the literature. Wide intervals show how "
                         "uncertain the published evidence is for a patient like this.")
    else:
        share = ", ".join(f"{QUANTITY_NAMES[q]} {v}%" for q, v in n["local_share"].items() if v is not None)
        out["source"] = (f"Source: {d['source']}. Share of each estimate's certainty that comes from the local "
                         f"data rather than the literature priors: {share}.")
    out["checklist"] = [(c["status"], STATUS_MARK[c["status"]], c["criterion"], c["detail"], c["source"])
                        for c in d["criteria"]]
    gd = d.get("guidance")
    out["guidance"] = None if gd is None else (
        f"Prior irAE {gd['organ']} grade {gd['grade']}: {gd['recommendation']}. {gd['text']}"
        + (f" Recurrence risk: {gd['recurrence_risk']}." if gd.get("recurrence_risk") else "")
        + f" [{gd['source']}]")
    out["warnings"] = list(d["warnings"])
    out["caveats"] = list(CAVEATS) + ([] if d["reliable"] else [out["banners"][0]])
    return out


QUANTITY_NAMES = {"pfs2_median_months": "median PFS2", "pfs2_6mo": "PFS2 at 6 months",
                  "pfs2_12mo": "PFS2 at 12 months", "rmst_12mo": "mean PFS2 time to 12 months",
                  "irae_any": "irAE recurrence", "irae_grade3plus": "grade ≥ 3 irAE recurrence"}


def render_text(d: Mapping[str, Any], width: int = 88) -> str:
    """Plain-text report from :meth:`PatientReport.to_dict`."""
    s = sections(d)

    def para(text: str, indent: str = "", first: str = "") -> list[str]:
        return textwrap.wrap(text, width, initial_indent=first or indent, subsequent_indent=indent) or [""]

    lines = [s["title"], "=" * min(width, len(s["title"]))]
    for b in s["banners"]:
        lines += ["", *para(b, "   ", "!! ")]
    lines += ["", *para("Patient: " + s["patient_line"])]
    lines += ["", "Progression-free survival after rechallenge (PFS2)"]
    for x in s["pfs2"]:
        lines += para(x, "  ", "- ")
    lines += para(s["reference"], "  ", "- ")
    if s["irae"]:
        lines += ["", "Immune-related adverse event (irAE) on rechallenge"]
        for x in s["irae"]:
            lines += para(x, "  ", "- ")
    lines += ["", *para(s["intervals"]), *para(s["source"])]
    lines += ["", "Review checklist (shown beside the model; the model does not use it)"]
    for _, mark, crit, detail, src in s["checklist"]:
        lines += para(f"{crit}. {detail} [{src}]", "      ", f"  {mark} ")
    if s["guidance"]:
        lines += para(s["guidance"], "      ", "  irAE guidance: ")
    if s["warnings"]:
        lines += ["", "Warnings"]
        for w in s["warnings"]:
            lines += para(w, "  ", "- ")
    lines += ["", "Caveats"]
    for c in s["caveats"]:
        lines += para(c, "  ", "- ")
    return "\n".join(lines) + "\n"
