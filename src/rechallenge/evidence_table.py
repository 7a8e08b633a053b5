"""Load and validate the evidence table (``priors/evidence.csv``).

One row per reported number from the two reviews, with the review's words (``snippet``)
and our judgement (``status``, ``direction``, ``endpoint``, ``cutoff_match``,
``analysis``, ``cohort_id``, ``extra_discounts``, ``judgement``). The column meanings
are documented in ``priors/README.md``.

Validation is strict, because a wrong sign or a swapped interval silently becomes a
wrong prior: every problem raises :class:`~rechallenge.errors.EvidenceError` naming the
row, its line in the file and the column.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from . import evidence as ev
from .errors import EvidenceError

COLUMNS: tuple[str, ...] = (
    "row_id", "seed", "ref", "first_author", "tumour_type", "n", "n_exposed", "n_reference",
    "covariate", "outcome", "measure", "estimate", "lower95", "upper95", "p_value",
    "reference_estimate", "landmark_months", "measure_note", "snippet",
    "status", "parameter", "exposed_level", "direction", "endpoint", "cutoff", "cutoff_match",
    "analysis", "cohort_id", "extra_discounts", "judgement",
)
NUMERIC = ("n", "n_exposed", "n_reference", "estimate", "lower95", "upper95",
           "reference_estimate", "landmark_months")
REQUIRED_TEXT = ("row_id", "seed", "ref", "first_author", "measure", "snippet", "status",
                 "direction", "endpoint", "cohort_id")
STATUSES = ("used", "excluded", "direction_only")
DIRECTIONS = ("as_reported", "inverted")
CUTOFF_MATCHES = ("exact", "different", "n/a", "")
ANALYSES = ("multivariable", "univariate", "unadjusted", "meta_analysis", "single_arm",
            "not_stated")
ENDPOINTS = ("pfs2", "os2", "orr2", "dcr2", "unclear", "irae_any", "irae_grade2plus",
             "irae_grade3plus", "irae_same_organ")
#: Endpoints whose evidence informs the irAE part of the model; all others inform PFS2.
IRAE_ENDPOINTS = ("irae_any", "irae_grade2plus", "irae_grade3plus", "irae_same_organ")

_LINE_OFFSET = 2  # header is line 1; data row i (0-based) is line i + 2


def outcome_of(endpoint: str) -> str:
    """Model outcome (``pfs2`` or ``irae``) that evidence on ``endpoint`` bears on."""
    return "irae" if endpoint in IRAE_ENDPOINTS else "pfs2"


def default_evidence_path() -> Path:
    """Path of the bundled evidence table."""
    from ._resources import resource_path
    return resource_path("priors", "evidence.csv")


def read_evidence(path: str | Path | None = None, *,
                  known_parameters: Iterable[str] | None = None,
                  discount_names: Iterable[str] | None = None) -> pd.DataFrame:
    """Read and validate an evidence table.

    Parameters
    ----------
    path
        CSV file; defaults to the bundled ``priors/evidence.csv``.
    known_parameters
        Parameter names a row may refer to (an unknown name is an error). ``None``
        skips the check.
    discount_names
        Discount names ``extra_discounts`` may use. ``None`` skips the check.

    Returns
    -------
    pandas.DataFrame
        One row per evidence row, numeric columns as floats, text columns as ``str``
        (empty string when blank), plus a ``line`` column (line in the file).

    Raises
    ------
    EvidenceError
        For an unreadable file, missing or unknown columns, or any invalid row.
    """
    path = Path(path) if path is not None else default_evidence_path()
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except FileNotFoundError:
        raise EvidenceError(f"file not found: {path}") from None
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise EvidenceError(f"{path} could not be read as a UTF-8 CSV file ({exc})") from None
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise EvidenceError(f"{path}: missing column(s) {missing}", column=missing[0])
    unknown = [c for c in raw.columns if c not in COLUMNS]
    if unknown:
        raise EvidenceError(f"{path}: unknown column(s) {unknown}", column=unknown[0])
    table = raw.loc[:, list(COLUMNS)].copy()
    table = table.apply(lambda col: col.str.strip())
    table["line"] = range(_LINE_OFFSET, _LINE_OFFSET + len(table))
    for col in NUMERIC:
        table[col] = [_to_float(v, row, col) for v, row in zip(table[col], table.itertuples())]
    known = set(known_parameters) if known_parameters is not None else None
    discounts = set(discount_names) if discount_names is not None else None
    seen_ids: dict[str, int] = {}
    for row in table.to_dict("records"):
        _validate_row(row, known, discounts, seen_ids)
    _validate_cohorts(table)
    return table.reset_index(drop=True)


def _to_float(value: str, row: object, column: str) -> float:
    if value == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise EvidenceError(f"{value!r} is not a number", row_id=getattr(row, "row_id", None) or None,
                            line=getattr(row, "line", None), column=column) from None


def _fail(row: dict, message: str, column: str | None = None) -> EvidenceError:
    return EvidenceError(message, row_id=row.get("row_id") or None, line=row.get("line"),
                         column=column)


def _validate_row(row: dict, known: set[str] | None, discounts: set[str] | None,
                  seen_ids: dict[str, int]) -> None:
    for col in REQUIRED_TEXT:
        if not row[col]:
            raise _fail(row, "required value missing", col)
    if row["row_id"] in seen_ids:
        raise _fail(row, f"duplicate row_id (first on line {seen_ids[row['row_id']]})", "row_id")
    seen_ids[row["row_id"]] = row["line"]
    for col, allowed in (("measure", ev.MEASURES), ("status", STATUSES),
                         ("direction", DIRECTIONS), ("cutoff_match", CUTOFF_MATCHES),
                         ("endpoint", ENDPOINTS)):
        if row[col] not in allowed:
            raise _fail(row, f"{row[col]!r} is not one of {list(allowed)}", col)
    if row["analysis"] and row["analysis"] not in ANALYSES:
        raise _fail(row, f"{row['analysis']!r} is not one of {list(ANALYSES)}", "analysis")
    if row["status"] != "excluded" and not row["parameter"]:
        raise _fail(row, f"a {row['status']} row must name the parameter it informs", "parameter")
    if known is not None and row["parameter"] and row["parameter"] not in known:
        raise _fail(row, f"unknown covariate/parameter {row['parameter']!r}; known: {sorted(known)}",
                    "parameter")
    extra = [k.strip() for k in row["extra_discounts"].split(";") if k.strip()]
    if discounts is not None:
        for key in extra:
            if key not in discounts:
                raise _fail(row, f"unknown discount {key!r}; defined: {sorted(discounts)}",
                            "extra_discounts")
    _validate_numbers(row, extra)


def _validate_numbers(row: dict, extra_discounts: list[str]) -> None:
    measure, est = row["measure"], row["estimate"]
    has_number = not math.isnan(est)
    if measure == "qualitative":
        if row["status"] == "used":
            raise _fail(row, "a qualitative row cannot be 'used' (use direction_only)", "status")
        return
    if not has_number:
        if row["status"] == "used":
            raise _fail(row, "missing estimate", "estimate")
        if not row["measure_note"]:
            raise _fail(row, "missing estimate (give measure_note for ranges or mark the "
                             "measure qualitative)", "estimate")
        return
    for col in ("n", "n_exposed", "n_reference"):
        if not math.isnan(row[col]) and row[col] <= 0:
            raise _fail(row, f"sample size must be positive, got {row[col]}", col)
    lo, hi = row["lower95"], row["upper95"]
    if math.isnan(lo) != math.isnan(hi):
        raise _fail(row, "give both ends of the interval or neither",
                    "lower95" if math.isnan(lo) else "upper95")
    if not math.isnan(lo) and not (lo <= est <= hi):
        raise _fail(row, f"interval [{lo}, {hi}] does not contain the estimate {est}", "lower95")
    if measure in ev.RATIO_MEASURES and est <= 0:
        raise _fail(row, f"a ratio must be positive, got {est}", "estimate")
    if measure in ("rate", "landmark", "rate_pair", "landmark_pair", "median_landmark") \
            and not 0 <= est <= 1:
        raise _fail(row, f"a proportion must lie in [0, 1], got {est}", "estimate")
    if measure in ("median", "median_pair") and est <= 0:
        raise _fail(row, f"a median must be positive, got {est}", "estimate")
    if measure.endswith("_pair") or measure == "median_landmark":
        if math.isnan(row["reference_estimate"]):
            raise _fail(row, f"a {measure} row needs reference_estimate", "reference_estimate")
    try:
        p, bound = ev.parse_p(row["p_value"])
    except ValueError as exc:
        raise _fail(row, str(exc), "p_value") from None
    if measure in ev.RATIO_MEASURES:
        if math.isnan(lo) and p is None and row["status"] == "used":
            raise _fail(row, "a used ratio needs a CI or a p-value", "p_value")
        if not math.isnan(lo) and p is not None and lo > 0 \
                and not ev.ci_and_p_agree(est, lo, hi, p, bound) \
                and "ci_p_conflict" not in extra_discounts:
            implied = ev.p_from_ci(est, lo, hi)
            raise _fail(row, f"CI implies p = {implied:.3g} but p = {row['p_value']} is reported; "
                             "check the source and record 'ci_p_conflict' in extra_discounts "
                             "with a judgement", "p_value")


def _validate_cohorts(table: pd.DataFrame) -> None:
    """A cohort may inform a parameter (of one outcome) through one used row only."""
    used = table[table["status"] == "used"]
    keys = list(zip(used["parameter"], used["endpoint"].map(outcome_of), used["cohort_id"]))
    seen: dict[tuple[str, str, str], dict] = {}
    for key, row in zip(keys, used.to_dict("records")):
        if key in seen:
            raise _fail(row, f"cohort {key[2]!r} already informs {key[0]!r} through row "
                             f"{seen[key]['row_id']!r}: one cohort is counted once", "cohort_id")
        seen[key] = row
