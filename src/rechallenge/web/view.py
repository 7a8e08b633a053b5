"""HTML pieces and the curve figure of the web page (no server, no Shiny session).

Stable element ids, so a test or a screen reader finds them:

* one element per quantity, ``id`` = the quantity name (``pfs2_median_months``,
  ``pfs2_6mo``, ``pfs2_12mo``, ``rmst_12mo``, ``irae_any``, ``irae_grade3plus``),
  holding the text of :func:`rechallenge.web.logic.format_quantity` and the raw numbers
  in ``data-estimate``, ``data-lower``, ``data-upper`` (Python ``repr``, exact; empty =
  not reached) and, for the median, ``data-not-reached-probability``;
* ``report`` (the whole result, ``data-run`` = how many results this session showed),
  ``contraindication_banner``, ``reliability_banner``, ``icon_array``, ``criteria``,
  ``caveats``, ``prediction_warnings``, ``input_error``, ``summary_text``,
  ``irae_guidance``.

Numbers come from :meth:`rechallenge.report.PatientReport.to_dict`; sentences, rounding
and caveats from :mod:`rechallenge.report_text`, so the page says what the reports say.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from htmltools import Tag, TagList, tags

from ..report_text import per100, sections
from .logic import QUANTITY_LABELS, data_value, format_quantity, icon_counts

STATUS_MARK = {"favourable": "✔ favourable", "unfavourable": "✘ unfavourable", "unknown": "? unknown"}

CSS = """
.rc-quantity { font-size: 1.25rem; font-weight: 600; }
.rc-label { font-size: 0.85rem; color: #555; }
.rc-banner { padding: 0.75rem 1rem; border-radius: 0.4rem; margin-bottom: 0.75rem; }
.rc-danger { background: #f8d7da; border: 2px solid #b02a37; color: #58151c; }
.rc-warning { background: #fff3cd; border: 1px solid #997404; color: #332701; }
.rc-icons { display: grid; grid-template-columns: repeat(10, 1.2rem); gap: 0.2rem; }
.rc-icon { width: 1.2rem; height: 1.2rem; border-radius: 50%; background: #cfd4da; }
.rc-icon.rc-any { background: #f0ad4e; }
.rc-icon.rc-severe { background: #b02a37; }
.rc-status-favourable { color: #146c43; }
.rc-status-unfavourable { color: #b02a37; font-weight: 600; }
.rc-status-unknown { color: #6c757d; }
.rc-stale { color: #997404; font-style: italic; }
"""


def error_message(message: str) -> Tag:
    """The readable message for invalid input (names the field)."""
    return tags.div({"id": "input_error", "class": "rc-banner rc-danger", "role": "alert"},
                    tags.strong("Please correct the form. "), message)


def quantity_element(quantity: str, entry: Mapping[str, Any]) -> Tag:
    attrs = {"id": quantity, "class": "rc-quantity", "data-estimate": data_value(entry["estimate"]),
             "data-lower": data_value(entry["lower"]), "data-upper": data_value(entry["upper"])}
    if "not_reached_probability" in entry:
        attrs["data-not-reached-probability"] = data_value(entry["not_reached_probability"])
    return tags.div(attrs, format_quantity(quantity, entry))


def quantities_table(numbers: Mapping[str, Any]) -> Tag:
    cells = []
    for q, label in QUANTITY_LABELS.items():
        if q not in numbers:
            continue
        extra = None
        if q == "pfs2_median_months":
            p = numbers[q]["not_reached_probability"]
            extra = tags.div({"class": "rc-label"},
                             f"probability that the median lies beyond "
                             f"{numbers['horizon_months']:g} months: {per100(p)}%")
        cells.append(tags.div({"class": "col-md-4 mb-3"}, tags.div({"class": "rc-label"}, label),
                              quantity_element(q, numbers[q]), extra))
    return tags.div({"class": "row"}, *cells,
                    tags.p({"class": "rc-label"}, f"Posterior median with {100 * numbers['ci']:g}% "
                           "credible interval."))


def summary_text(numbers: Mapping[str, Any]) -> Tag:
    """The reports' sentences (natural frequencies, reference patient, source)."""
    s = sections(numbers)
    lines = [*s["pfs2"], s["reference"], *s["irae"], s["intervals"], s["source"]]
    return tags.div({"id": "summary_text"}, tags.ul(*[tags.li(x) for x in lines]))


def icon_array(numbers: Mapping[str, Any]) -> Tag | None:
    """10 × 10 icons: of 100 patients like this, how many have an irAE recurrence."""
    if "irae_any" not in numbers:
        return None
    anyg, severe = icon_counts(numbers)
    icons = [tags.span({"class": "rc-icon " + ("rc-severe" if i < severe else "rc-any" if i < anyg
                                               else "")}) for i in range(100)]
    text = (f"Of 100 patients like this, about {anyg} would have an irAE recurrence, "
            f"{severe} of them grade 3 or higher (posterior medians; see the intervals above).")
    return tags.div({"id": "icon_array", "data-any": str(anyg), "data-severe": str(severe)},
                    tags.div({"class": "rc-icons", "role": "img", "aria-label": text}, *icons),
                    tags.p({"class": "rc-label mt-2"}, text,
                           tags.br(), tags.span({"style": "color:#b02a37"}, "●"), " grade ≥ 3  ",
                           tags.span({"style": "color:#f0ad4e"}, "●"), " grade 1–2  ",
                           tags.span({"style": "color:#cfd4da"}, "●"), " no recurrence"))


def criteria_table(numbers: Mapping[str, Any]) -> Tag:
    rows = [tags.tr(tags.td(c["criterion"]),
                    tags.td({"class": f"rc-status-{c['status']}", "data-status": c["status"]},
                            STATUS_MARK.get(c["status"], c["status"])),
                    tags.td({"class": "rc-label"}, c.get("detail", "")),
                    tags.td({"class": "rc-label"}, c["source"]))
            for c in numbers["criteria"]]
    guidance = sections(numbers)["guidance"]
    return tags.div({"id": "criteria"},
                    tags.table({"class": "table table-sm"},
                               tags.thead(tags.tr(tags.th("Criterion (favourable condition)"),
                                                  tags.th("This patient"), tags.th("Why"),
                                                  tags.th("Source"))),
                               tags.tbody(*rows)),
                    tags.p({"id": "irae_guidance"}, tags.strong("irAE guidance: "), guidance)
                    if guidance else None,
                    tags.p({"class": "rc-label"}, "The review's checklist is shown beside the "
                           "model; the model does not use it and it does not change the numbers."))


def banners(numbers: Mapping[str, Any]) -> TagList:
    out = TagList()
    if numbers["contraindicated"]:
        out.append(tags.div({"id": "contraindication_banner", "class": "rc-banner rc-danger",
                             "role": "alert"},
                            tags.strong("Rechallenge is contraindicated according to the review. "),
                            tags.ul(*[tags.li(r) for r in numbers["contraindication_reasons"]])))
    if not numbers["reliable"]:
        out.append(tags.div({"id": "reliability_banner", "class": "rc-banner rc-danger",
                             "role": "alert"},
                            tags.strong("The model fit is UNRELIABLE. "),
                            "It did not pass the convergence checks (R-hat, effective sample "
                            "size, divergences); do not use these numbers for decisions. Refit "
                            "the model and check its diagnostics."))
    return out


def caveats(numbers: Mapping[str, Any]) -> Tag:
    items = [*sections(numbers)["caveats"],
             "Values left blank or 'unknown' are averaged over their distribution: the intervals "
             "then include not knowing them."]
    return tags.div({"id": "caveats"}, tags.h5("Caveats"), tags.ul(*[tags.li(i) for i in items]))


def prediction_warnings(numbers: Mapping[str, Any]) -> Tag | None:
    if not numbers["warnings"]:
        return None
    return tags.div({"id": "prediction_warnings", "class": "rc-banner rc-warning"},
                    tags.strong("Notes on this prediction: "),
                    tags.ul(*[tags.li(w) for w in numbers["warnings"]]))


def report_html(numbers: Mapping[str, Any], run: int, *, with_banners: bool = True) -> Tag:
    """The numbers part of the result (the curve is a separate Shiny plot output)."""
    return tags.div({"id": "report", "data-run": str(run)},
                    banners(numbers) if with_banners else None,
                    quantities_table(numbers),
                    summary_text(numbers),
                    prediction_warnings(numbers),
                    tags.h5("irAE recurrence"), icon_array(numbers),
                    tags.h5("Review's selection criteria", {"class": "mt-3"}), criteria_table(numbers),
                    caveats(numbers))


def curve_figure(report: Any):
    """PFS2 curve of a :class:`rechallenge.report.PatientReport`: posterior median with
    50% and 95% pointwise credible bands, the reference patient's median curve, and the
    6-/12-month estimates marked (the dots are the page's numbers; the 95% band at 6 and
    12 months is their interval)."""
    from matplotlib.figure import Figure

    from ..report import CURVE_QUANTILES

    assert tuple(CURVE_QUANTILES) == (0.025, 0.25, 0.5, 0.75, 0.975)
    times, q, ref = np.asarray(report.times), np.asarray(report.curve), np.asarray(report.reference_curve)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    ax.fill_between(times, q[0], q[4], color="C0", alpha=0.18, lw=0, label="95% credible band")
    ax.fill_between(times, q[1], q[3], color="C0", alpha=0.35, lw=0, label="50% credible band")
    ax.plot(times, q[2], color="C0", lw=2, label="this patient (median)")
    ax.plot(times, ref[2], color="0.35", lw=1.2, ls="--",
            label="reference patient (same tumour, regimen, irAE; favourable factors)")
    for q_name, t in (("pfs2_6mo", 6.0), ("pfs2_12mo", 12.0)):
        ax.plot([t], [report.summary[q_name]["estimate"]], "o", color="C3", ms=5, zorder=3)
    ax.set_xlim(0, float(times[-1]))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("months since rechallenge")
    ax.set_ylabel("probability of no progression (PFS2)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
