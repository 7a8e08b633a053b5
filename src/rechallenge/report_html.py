"""One self-contained HTML page for one or more patient reports.

Inline CSS, figures as base64 PNG ``data:`` images, no scripts, no external links or
fonts: the file can be e-mailed, archived or opened offline. The sentences are those of
:func:`rechallenge.report_text.sections` (the same rounded numbers as the text and PDF);
every user-supplied string is HTML-escaped.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any, Sequence

from .report_figures import report_pngs
from .report_text import sections

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #222;
       max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.45rem; margin-bottom: .3rem; } h2 { font-size: 1.1rem; margin: 1.2rem 0 .4rem; }
.banner { border: 2px solid #a50f15; background: #fee5d9; color: #67000d; padding: .6rem .8rem;
          font-weight: 600; margin: .6rem 0; }
.inputs { border-collapse: collapse; font-size: .92rem; }
.inputs td { padding: .1rem .8rem .1rem 0; } .inputs td:first-child { color: #555; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.figures img { max-width: 100%; height: auto; }
table.checklist { border-collapse: collapse; width: 100%; font-size: .9rem; }
table.checklist th, table.checklist td { border-bottom: 1px solid #ddd; padding: .3rem .4rem;
                                         text-align: left; vertical-align: top; }
.favourable { color: #006d2c; font-weight: 600; } .unfavourable { color: #a50f15; font-weight: 600; }
.unknown { color: #777; font-weight: 600; }
.small { font-size: .85rem; color: #444; }
section.report { page-break-after: always; border-bottom: 3px solid #eee; padding-bottom: 1rem; }
@media print { body { margin: 0; } .figures img { max-width: 48%; } }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in items) + "</ul>"


def _section(report: Any) -> str:
    s = sections(report.to_dict())
    png = report_pngs(report)
    h = [f'<section class="report"><h1>{escape(s["title"])}</h1>']
    h += [f'<div class="banner">{escape(b)}</div>' for b in s["banners"]]
    h.append('<table class="inputs">' + "".join(
        f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in s["patient"]) + "</table>")
    h.append("<h2>Progression-free survival after rechallenge (PFS2)</h2>")
    h.append(_list([*s["pfs2"], s["reference"]]))
    if s["irae"]:
        h.append("<h2>Immune-related adverse event (irAE) on rechallenge</h2>")
        h.append(_list(s["irae"]))
    h.append('<div class="figures">' + _img(png["pfs2"], "PFS2 curve with 50% and 95% credible bands")
             + _img(png["irae"], "Icon array of irAE recurrence per 100 patients") + "</div>")
    h.append(f'<p class="small">{escape(s["intervals"])}<br>{escape(s["source"])}</p>')
    h.append("<h2>Review checklist</h2><p class=\"small\">Shown beside the model; the model does not use it.</p>")
    h.append('<table class="checklist"><tr><th>status</th><th>criterion</th><th>this patient</th>'
             "<th>source</th></tr>" + "".join(
                 f'<tr><td class="{escape(st)}">{escape(mark)} {escape(st)}</td><td>{escape(crit)}</td>'
                 f"<td>{escape(detail)}</td><td>{escape(src)}</td></tr>"
                 for st, mark, crit, detail, src in s["checklist"]) + "</table>")
    if s["guidance"]:
        h.append(f"<p><strong>irAE guidance:</strong> {escape(s['guidance'])}</p>")
    if s["warnings"]:
        h.append("<h2>Warnings</h2>" + _list(s["warnings"]))
    h.append("<h2>Caveats</h2>" + _list(s["caveats"]))
    h.append("</section>")
    return "\n".join(h)


def render_html(reports: Sequence[Any]) -> str:
    """The page (a ``str``): one section per report."""
    title = ("ICI rechallenge report: " + ", ".join(r.patient_id for r in reports[:5])
             + (" …" if len(reports) > 5 else ""))
    body = "\n".join(_section(r) for r in reports)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
