"""``rechallenge predict``: one patient's report from the command line (or many from a CSV).

::

    rechallenge predict --ecog 1 --pfs1 8 --tfi 7 --liver-mets 0 --nlr 2.9 --reason irae \\
        --tumour nsclc --regimen pd1_pdl1 --prior-irae-grade 2 --prior-irae-organ colitis
    rechallenge predict --patients patients.csv --model fit.nc --format json --out reports.json
    rechallenge predict ... --format html --out patient.html     # one self-contained file
    rechallenge predict ... --format pdf --out patient.pdf

* Without ``--model`` the literature model (priors only, no local data) is used; with
  ``--model FIT.nc`` a saved fit (read without PyMC/ArviZ, integrity-checked).
* ``--ecog``, ``--pfs1``, ``--tfi``, ``--liver-mets`` and ``--nlr`` may be omitted or given
  as ``NA``: the model averages over the missing value (wider interval) and the report
  says so. ``--reason``, ``--tumour``, ``--regimen``, ``--prior-irae-grade`` and
  ``--prior-irae-organ`` are required.
* ``--format text`` (default) and ``json`` print to standard output unless ``--out`` is
  given; ``html`` and ``pdf`` need ``--out``. Files are written through a temporary file
  and a rename: a file is never half-written, and an existing file is untouched when
  anything fails.
* A bad value gets one line ``error: --flag: …`` (or the CSV row and column) on standard
  error and exit code 2, without a traceback.

Importing this module is cheap (standard library only); the model code is imported when
the command runs, and never PyMC or ArviZ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import RechallengeError

#: Cohort-contract (or checklist) field -> command-line flag.
FLAGS: dict[str, str] = {
    "patient_id": "--id", "ecog": "--ecog", "pfs1_months": "--pfs1", "tfi_months": "--tfi",
    "liver_mets": "--liver-mets", "nlr": "--nlr", "discontinuation_reason": "--reason",
    "tumour_type": "--tumour", "regimen_class": "--regimen", "prior_irae_grade": "--prior-irae-grade",
    "prior_irae_organ": "--prior-irae-organ", "centre": "--centre",
    "irae_resolved_grade": "--irae-resolved-grade", "steroids_tapered": "--steroids-tapered",
}
IMPUTABLE = ("ecog", "pfs1_months", "tfi_months", "liver_mets", "nlr")
REQUIRED = ("discontinuation_reason", "tumour_type", "regimen_class", "prior_irae_grade", "prior_irae_organ")
_MISSING = {"", "na", "n/a", "nan"}
_HELP = {
    "ecog": "ECOG performance status at rechallenge, 0-4 (omit or NA: unknown)",
    "pfs1_months": "PFS on the first ICI course, months (omit or NA: unknown)",
    "tfi_months": "treatment-free interval (end of first course to rechallenge), months (omit or NA: unknown)",
    "liver_mets": "liver metastases at rechallenge, 0/1 or no/yes (omit or NA: unknown)",
    "nlr": "neutrophil-to-lymphocyte ratio at rechallenge, > 0 (omit or NA: unknown)",
    "discontinuation_reason": "why the first course stopped: progression, irae, clinical_decision",
    "tumour_type": "nsclc, melanoma, rcc, gastric, hcc, escc, sclc, urothelial, other",
    "regimen_class": "rechallenge regimen: pd1_pdl1, ctla4_containing",
    "prior_irae_grade": "worst irAE grade on the first course, 0-4",
    "prior_irae_organ": "organ of that irAE: none, colitis, pneumonitis, hepatitis, myocarditis, "
                        "endocrine, dermatologic, renal, other",
    "centre": "centre name (a fit with centre effects uses it)",
    "irae_resolved_grade": "current grade of the prior irAE, 0-4 (checklist only)",
    "steroids_tapered": "corticosteroids stopped or tapered to <= 10 mg/day prednisone (checklist only)",
    "patient_id": "name shown on the report (default: patient)",
}


def _add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("one patient (flags)")
    for field, flag in FLAGS.items():
        kwargs: dict[str, Any] = {"dest": field, "default": None, "help": _HELP[field], "metavar": "VALUE"}
        if field == "steroids_tapered":
            kwargs.update(choices=("yes", "no"), metavar="yes|no")
        g.add_argument(flag, **kwargs)
    p.add_argument("--patients", type=Path, metavar="FILE.csv",
                   help="many patients: a CSV with the cohort contract's columns (outcomes absent)")
    p.add_argument("--model", type=Path, metavar="FIT.nc",
                   help="a saved fit (default: the literature model, priors only)")
    p.add_argument("--format", choices=("text", "json", "html", "pdf"), default="text")
    p.add_argument("--out", type=Path, metavar="FILE", help="write here (required for html and pdf)")
    p.add_argument("--ci", type=float, default=0.95, help="credible interval mass (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed for new groups and missing values")


def add_predict_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``predict`` to the ``rechallenge`` sub-commands (``func=run_predict``)."""
    p = subparsers.add_parser("predict", help="one patient's PFS2 and irAE report (text, JSON, HTML, PDF)",
                              description=__doc__.split("\n\n")[0])
    _add_arguments(p)
    p.set_defaults(func=run_predict)
    return p


def _strip_prefix(exc: Exception, empty: Exception) -> str:
    """The message of ``exc`` without the location prefix its class adds."""
    text, prefix = str(exc), str(empty)
    return text[len(prefix):] if text.startswith(prefix) else text


def _given(args: argparse.Namespace, field: str) -> str | None:
    value = getattr(args, field)
    return None if value is None or str(value).strip().lower() in _MISSING else str(value).strip()


def _patient_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    # The cohort contract: prior_irae_organ is "none" if and only if prior_irae_grade is 0.
    if _given(args, "prior_irae_grade") == "0" and _given(args, "prior_irae_organ") is None:
        args.prior_irae_organ = "none"
    if str(_given(args, "prior_irae_organ")).lower() == "none" and _given(args, "prior_irae_grade") is None:
        args.prior_irae_grade = "0"
    missing = [FLAGS[f] for f in REQUIRED if _given(args, f) is None]
    if missing:
        raise RechallengeError(f"missing required {'flag' if len(missing) == 1 else 'flags'} "
                               f"{', '.join(missing)} (these cannot be averaged over; "
                               "see `rechallenge predict --help`)")
    patient: dict[str, Any] = {"patient_id": args.patient_id or "patient"}
    for field in FLAGS:
        value = getattr(args, field)
        if field == "patient_id" or value is None:
            continue
        text = str(value).strip()
        if field in IMPUTABLE and text.lower() in _MISSING:
            patient[field] = ""  # blank = missing: averaged over
        elif field == "liver_mets" and text.lower() in ("yes", "no"):
            patient[field] = "1" if text.lower() == "yes" else "0"
        else:
            patient[field] = text
    for field in IMPUTABLE:
        patient.setdefault(field, "")
    return patient


def _flag_error(exc: RechallengeError) -> RechallengeError:
    """Rephrase a cohort/checklist error about the single patient in terms of its flag."""
    from .errors import CohortError

    column = getattr(exc, "column", None)
    if isinstance(exc, CohortError) and column in FLAGS:
        empty = CohortError("", row=exc.row, patient_id=exc.patient_id, column=column)
        return RechallengeError(f"{FLAGS[column]}: {_strip_prefix(exc, empty)}")
    return exc


def _render(reports: list, fmt: str) -> str:
    if fmt == "json":
        return json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if fmt == "html":
        from .report import to_html
        return to_html(reports)
    return ("\n" + "-" * 88 + "\n\n").join(r.to_text() for r in reports)


def run_predict(args: argparse.Namespace) -> int:
    """Run ``rechallenge predict`` (arguments from :func:`add_predict_parser`); returns 0.

    Raises
    ------
    RechallengeError
        For any bad input (the caller prints ``error: …`` and exits with code 2).
    """
    flags = [FLAGS[f] for f in FLAGS if getattr(args, f, None) is not None]
    if args.patients is not None and flags:
        raise RechallengeError(f"--patients cannot be combined with per-patient flags ({', '.join(flags)}); "
                               "put the values in the CSV file")
    if args.format in ("html", "pdf") and args.out is None:
        raise RechallengeError(f"--format {args.format} writes a file: give --out FILE.{args.format}")
    if args.out is not None and args.out.is_dir():
        raise RechallengeError(f"--out {args.out} is a directory; give a file name")
    if not 0 < args.ci < 1:
        raise RechallengeError(f"--ci must be between 0 and 1 (e.g. 0.95), got {args.ci:g}")
    patients: Any = args.patients if args.patients is not None else _patient_from_flags(args)

    from .report import build_reports

    if args.model is not None:
        from .fitio import load_posterior
        model = load_posterior(args.model)
    else:
        from .literature_model import literature_model
        model = literature_model()
    try:
        reports = build_reports(model, patients, ci=args.ci, seed=args.seed)
    except RechallengeError as exc:
        raise (exc if args.patients is not None else _flag_error(exc)) from None

    if args.format == "pdf":
        from .report import write_pdf
        write_pdf(reports, args.out)
    else:
        text = _render(reports, args.format)
        if args.out is None:
            sys.stdout.write(text)
            return 0
        from ._resources import atomic_write_text
        atomic_write_text(args.out, text)
    print(f"{len(reports)} report{'s' if len(reports) != 1 else ''} written to {args.out}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rechallenge.predict_cli`` (same as ``rechallenge predict``)."""
    parser = argparse.ArgumentParser(prog="rechallenge predict", description=__doc__.split("\n\n")[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_predict(args)
    except RechallengeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        sys.stderr.close()
        return 0


def without_dask() -> None:
    """Make dask unimportable in this process.

    Nothing here uses dask, but xarray imports it whenever it is installed (to check for
    dask arrays, and to list chunk managers when opening a file): ~0.3 s of a ~1 s
    command. Only for a process that runs this command alone and has not imported dask:
    ``python -m rechallenge.predict_cli`` and the ``rechallenge predict`` console script
    (:func:`rechallenge.cli.console_main`), never on import or from ``cli.main``.
    """
    if "dask" not in sys.modules:
        sys.modules["dask"] = None  # type: ignore[assignment]  # import dask -> ImportError


if __name__ == "__main__":  # pragma: no cover
    without_dask()
    sys.exit(main())
