"""Figures of a patient report and the PDF.

* :func:`plot_pfs2_curve` — the patient's PFS2 curve (posterior median, 50% and 95%
  bands) against the reference patient's median curve, with the 6- and 12-month
  milestones and their credible intervals.
* :func:`plot_irae_icons` — a 10 × 10 icon array of irAE recurrence (grade ≥ 3, grade
  1-2, none) at the posterior medians; the intervals are in the text.
* :func:`write_pdf` — one report per page group (figures, sentences, checklist,
  caveats), written atomically.

Matplotlib is imported inside the functions and only through :class:`matplotlib.figure.Figure`
(never ``pyplot``): no GUI backend, no ``plt.show``; figures are rendered by Agg (PNG)
and the PDF backend. Every number drawn comes from :func:`rechallenge.report_text.display_numbers`
of the report's :meth:`~rechallenge.report.PatientReport.to_dict`, as in the text.
"""

from __future__ import annotations

import io
import os
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Sequence

from .report_text import display_numbers, sections

COLOURS = {"band95": "#c6dbef", "band50": "#6baed6", "median": "#08519c", "reference": "#636363",
           "grade3": "#a50f15", "grade12": "#fc9272", "none": "#d9d9d9", "milestone": "#08519c"}


def _new_axes(ax: Any, size: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained").add_subplot()


def plot_pfs2_curve(report: Any, ax: Any = None) -> Any:
    """PFS2 curve of a :class:`~rechallenge.report.PatientReport`; returns the Axes.

    The y axis counts patients free of progression out of 100. Bands: 95% (light) and
    50% (dark) pointwise credible bands; dashed grey: the reference patient's median
    curve; markers at 6 and 12 months: posterior median and ``ci`` interval, labelled
    with the rounded numbers of the text.
    """
    ax = _new_axes(ax, (6.4, 3.8))
    t, q, ref = report.times, 100 * report.curve, 100 * report.reference_curve
    ax.fill_between(t, q[0], q[4], color=COLOURS["band95"], lw=0, label="95% band")
    ax.fill_between(t, q[1], q[3], color=COLOURS["band50"], lw=0, alpha=0.8, label="50% band")
    ax.plot(t, q[2], color=COLOURS["median"], lw=2, label="this patient (median)")
    ax.plot(t, ref[2], color=COLOURS["reference"], lw=1.5, ls="--",
            label="reference patient, favourable factors (median)")
    d = report.to_dict()
    n = display_numbers(d)
    for key, month in (("pfs2_6mo", 6.0), ("pfs2_12mo", 12.0)):
        if month > t[-1] or key not in d:
            continue
        est, lo, hi = (100 * d[key][k] for k in ("estimate", "lower", "upper"))
        ax.axvline(month, color="0.75", lw=0.8, ls=":")
        ax.errorbar([month], [est], yerr=[[est - lo], [hi - est]], fmt="o", color=COLOURS["milestone"],
                    ms=5, capsize=3, lw=1.2, zorder=5)
        ax.annotate(f"{n[key]['estimate']} ({n[key]['lower']}–{n[key]['upper']})", (month, est),
                    xytext=(6, 6), textcoords="offset points", fontsize=8, color=COLOURS["milestone"],
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.set_xlim(0, float(t[-1]))
    ax.set_ylim(0, 100)
    ax.set_xlabel("months after rechallenge")
    ax.set_ylabel("free of progression (of 100)")
    ax.set_title(f"PFS2 — patient {report.patient_id}", fontsize=10)
    ax.legend(fontsize=7, loc="upper right", frameon=False)
    return ax


def plot_irae_icons(report: Any, ax: Any = None) -> Any:
    """10 × 10 icon array of irAE recurrence on rechallenge; returns the Axes.

    Counts are the posterior medians per 100 patients (as in the text): grade ≥ 3
    (dark), grade 1-2 (light: any grade minus grade ≥ 3), no irAE (grey).
    """
    ax = _new_axes(ax, (3.6, 3.8))
    d = report.to_dict()
    ax.set_axis_off()
    ax.set_aspect("equal")
    if "irae_any" not in d:
        ax.text(0.5, 0.5, "no irAE part in this model", ha="center", va="center", transform=ax.transAxes)
        return ax
    n = display_numbers(d)
    n_any, n_3 = int(n["irae_any"]["estimate"]), int(n["irae_grade3plus"]["estimate"])
    n_3 = min(n_3, n_any)
    colours = [COLOURS["grade3"]] * n_3 + [COLOURS["grade12"]] * (n_any - n_3) + [COLOURS["none"]] * (100 - n_any)
    xs = [i % 10 for i in range(100)]
    ys = [9 - i // 10 for i in range(100)]
    ax.scatter(xs, ys, c=colours, s=90, marker="o", edgecolors="white", linewidths=0.5)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=COLOURS["grade3"], label=f"grade ≥ 3 irAE: {n_3}"),
                       Patch(color=COLOURS["grade12"], label=f"grade 1–2 irAE: {n_any - n_3}"),
                       Patch(color=COLOURS["none"], label=f"no irAE: {100 - n_any}")],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=7, frameon=False, ncol=1)
    ax.set_xlim(-0.7, 9.7)
    ax.set_ylim(-0.7, 9.7)
    ax.set_title("irAE on rechallenge, of 100 like this", fontsize=10)
    return ax


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """PNG bytes of a Matplotlib figure (no metadata, so the bytes carry no links)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def report_pngs(report: Any) -> dict[str, bytes]:
    """``{"pfs2": png, "irae": png}`` for HTML pages."""
    return {"pfs2": figure_png(plot_pfs2_curve(report).figure),
            "irae": figure_png(plot_irae_icons(report).figure)}


# --------------------------------------------------------------------------- PDF

_A4 = (8.27, 11.69)
_MARGIN = 0.06
_LINE = 0.0155  # line height, fraction of the page, at 8.5 pt
_WRAP = 105


class _Pages:
    """Sequential text layout on A4 pages; a new page when one is full."""

    def __init__(self, pdf: Any) -> None:
        self.pdf, self.fig, self.y = pdf, None, 0.0

    def page(self) -> Any:
        from matplotlib.figure import Figure

        self.flush()
        self.fig, self.y = Figure(figsize=_A4), 1 - _MARGIN
        return self.fig

    def flush(self) -> None:
        if self.fig is not None:
            self.pdf.savefig(self.fig)
            self.fig = None

    def line(self, text: str, *, size: float = 8.5, weight: str = "normal", color: str = "black",
             indent: str = "", first: str = "") -> None:
        for i, piece in enumerate(textwrap.wrap(text, _WRAP, initial_indent=first or indent,
                                                subsequent_indent=indent) or [""]):
            if self.fig is None or self.y < _MARGIN:
                self.page()
            self.fig.text(_MARGIN, self.y, piece, fontsize=size, weight=weight, color=color,
                          family="DejaVu Sans", va="top")
            self.y -= _LINE * size / 8.5

    def gap(self, k: float = 0.5) -> None:
        self.y -= _LINE * k

    def heading(self, text: str, keep: int = 4) -> None:
        """A bold heading, on a new page unless ``keep`` more lines fit below it."""
        if self.fig is not None and self.y - _LINE * (keep + 1) < _MARGIN:
            self.page()
        self.line(text, weight="bold")

    def bullets(self, heading: str, items: Sequence[str]) -> None:
        """A heading and one dashed, hanging-indented line per item."""
        self.heading(heading)
        for item in items:
            self.line(item, indent="   ", first="– ")


def _pdf_report(pages: _Pages, report: Any) -> None:
    s = sections(report.to_dict())
    fig = pages.page()
    pages.line(s["title"], size=13, weight="bold")
    pages.gap()
    for b in s["banners"]:
        pages.line(b, size=9, weight="bold", color="#a50f15")
    pages.line("Patient: " + s["patient_line"])
    pages.gap()
    top = pages.y
    ax1 = fig.add_axes((0.08, top - 0.33, 0.55, 0.3))
    ax2 = fig.add_axes((0.68, top - 0.31, 0.28, 0.28))
    plot_pfs2_curve(report, ax1)
    plot_irae_icons(report, ax2)
    pages.y = top - 0.38
    pages.bullets("Progression-free survival after rechallenge (PFS2)", [*s["pfs2"], s["reference"]])
    if s["irae"]:
        pages.gap()
        pages.bullets("Immune-related adverse event (irAE) on rechallenge", s["irae"])
    pages.gap()
    pages.line(s["intervals"])
    pages.line(s["source"])
    pages.gap()
    pages.heading("Review checklist (shown beside the model; the model does not use it)")
    for _, mark, crit, detail, src in s["checklist"]:
        pages.line(f"{crit}. {detail} [{src}]", indent="        ", first=f"{mark}  ")
    if s["guidance"]:
        pages.line(s["guidance"], indent="        ", first="irAE guidance: ")
    if s["warnings"]:
        pages.gap()
        pages.bullets("Warnings", s["warnings"])
    pages.gap()
    pages.bullets("Caveats", s["caveats"])


def write_pdf(reports: Sequence[Any], path: str | Path) -> Path:
    """Write reports to a PDF (A4, each report starting on a new page) atomically.

    The file is written to a temporary file in the same folder and renamed, so an
    existing file is replaced only by a complete PDF and never half-written.
    """
    from matplotlib.backends.backend_pdf import PdfPages

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with PdfPages(tmp, metadata={"Title": "ICI rechallenge report", "Creator": "rechallenge"}) as pdf:
            pages = _Pages(pdf)
            for r in reports:
                _pdf_report(pages, r)
            pages.flush()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
