"""Cohort contract: one row per rechallenged patient, validated before any model sees it.

Columns (exact names; whitespace around names and cells is ignored; categories are
matched lower-cased against :data:`CATEGORIES`):

- never blank: ``patient_id`` (unique text), ``pfs2_months`` (> 0), ``pfs2_event``
  (1 progression or death, 0 censored), ``discontinuation_reason``, ``tumour_type``,
  ``regimen_class``, ``prior_irae_organ`` (categories), ``prior_irae_grade`` (0-4);
- blank = missing, imputed by the model (:data:`IMPUTABLE`): ``ecog`` (integer 0-4),
  ``pfs1_months``, ``tfi_months`` (>= 0; TFI = end of the first ICI course to
  rechallenge), ``liver_mets`` (0/1), ``nlr`` (> 0);
- ``strategy`` (category): blank is an error when required, else kept as ``""``;
  ``centre`` (text): blank -> ``"unknown"``; ``irae_recurrence`` (category): blank =
  not assessed, kept as ``""``.

Other columns must be declared as ``extra`` covariates (``"binary"`` 0/1 or
``"continuous"``; blanks imputed). Every problem raises
:class:`~rechallenge.errors.CohortError` for the *first* error (columns in contract
order, then rows in order), naming row, patient and column; rows are never dropped.

Derived covariates, computed only by :func:`derive_covariates` (floats; NaN where the
source is missing; derived only when the source column is present):

========================= ================================================================
covariate                 definition (1.0 if true, else 0.0)
========================= ================================================================
``ecog_ge2``              ``ecog`` >= 2
``pfs1_lt6``              ``pfs1_months`` < 6 (exactly 6 months -> 0)
``tfi_le6``               ``tfi_months`` <= 6 (exactly 6 months -> 1)
``liver_mets``            ``liver_mets`` == 1
``nlr``                   ``nlr`` >= 3.8: one unit = "NLR >= 3.8 vs < 3.8" (Musaelyan et al.)
``reason_progression``    ``discontinuation_reason`` == ``progression``
``reason_irae``           ``discontinuation_reason`` == ``irae`` (reference: clinical_decision)
``regimen_ctla4``         ``regimen_class`` == ``ctla4_containing``
``prior_irae_grade3plus`` ``prior_irae_grade`` >= 3
*extra columns*           passed through unchanged as float (the model standardises)
========================= ================================================================

This module never logs or prints patient data; only error messages quote a row number,
a ``patient_id``, a column and the offending value.
"""

from __future__ import annotations

import csv
import difflib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CohortError

PFS2_OUTCOME: tuple[str, ...] = ("pfs2_months", "pfs2_event")
#: Covariates that may be blank: the model imputes them.
IMPUTABLE: tuple[str, ...] = ("ecog", "pfs1_months", "tfi_months", "liver_mets", "nlr")
CATEGORIES: dict[str, tuple[str, ...]] = {
    "discontinuation_reason": ("progression", "irae", "clinical_decision"),
    "tumour_type": ("nsclc", "melanoma", "rcc", "gastric", "hcc", "escc", "sclc", "urothelial",
                    "other"),
    "strategy": ("monotherapy", "chemo", "antiangiogenic", "radiotherapy", "dual_ici", "triple"),
    "regimen_class": ("pd1_pdl1", "ctla4_containing"),
    "prior_irae_organ": ("none", "colitis", "pneumonitis", "hepatitis", "myocarditis",
                         "endocrine", "dermatologic", "renal", "other"),
    "irae_recurrence": ("none", "grade1_2", "grade3plus"),
}
# Contract columns in scan order, with the kind of value each holds.
_KINDS: dict[str, str] = {
    "patient_id": "id", "pfs2_months": "positive", "pfs2_event": "event", "ecog": "grade",
    "pfs1_months": "nonnegative", "tfi_months": "nonnegative", "liver_mets": "binary",
    "nlr": "positive", "discontinuation_reason": "category", "tumour_type": "category",
    "centre": "text", "strategy": "category", "regimen_class": "category",
    "prior_irae_grade": "grade", "prior_irae_organ": "category",
    "irae_recurrence": "category",
}
COLUMNS: tuple[str, ...] = tuple(_KINDS)
_NOT_DEFAULT = ("centre", "strategy", "regimen_class", "prior_irae_grade",
                "prior_irae_organ", "irae_recurrence")
NLR_CUTOFF = 3.8
_IRAE_CODES = {"none": 0.0, "grade1_2": 1.0, "grade3plus": 2.0, "": math.nan}
_BLANK = {"centre": "unknown", "irae_recurrence": "", "strategy": ""}  # value of a blank

_NUM, _CAT = "numeric", "category"
# covariate -> (source column, source kind, indicator on non-missing values, definition)
_DERIVATIONS: dict[str, tuple[str, str, Callable[[pd.Series], pd.Series], str]] = {
    "ecog_ge2": ("ecog", _NUM, lambda s: s >= 2, "ecog >= 2"),
    "pfs1_lt6": ("pfs1_months", _NUM, lambda s: s < 6, "pfs1_months < 6"),
    "tfi_le6": ("tfi_months", _NUM, lambda s: s <= 6, "tfi_months <= 6"),
    "liver_mets": ("liver_mets", _NUM, lambda s: s == 1, "liver metastases (liver_mets == 1)"),
    "nlr": ("nlr", _NUM, lambda s: s >= NLR_CUTOFF, "nlr >= 3.8 (cut-off of Musaelyan et al.)"),
    "reason_progression": ("discontinuation_reason", _CAT, lambda s: s == "progression",
                           "discontinuation_reason == 'progression' (ref. clinical_decision)"),
    "reason_irae": ("discontinuation_reason", _CAT, lambda s: s == "irae",
                    "discontinuation_reason == 'irae' (ref. clinical_decision)"),
    "regimen_ctla4": ("regimen_class", _CAT, lambda s: s == "ctla4_containing",
                      "regimen_class == 'ctla4_containing' (ref. pd1_pdl1)"),
    "prior_irae_grade3plus": ("prior_irae_grade", _NUM, lambda s: s >= 3,
                              "prior_irae_grade >= 3"),
}
#: Derived covariate name -> one-line definition (1.0 if true, else 0.0; NaN if missing).
DERIVED: dict[str, str] = {name: spec[3] for name, spec in _DERIVATIONS.items()}


@dataclass(frozen=True, eq=False)
class Cohort:
    """A validated cohort; build it with :func:`validate_cohort` or :func:`read_cohort`.

    Attributes
    ----------
    data
        Normalised copy, one row per patient, index ``0..n-1``: numeric columns float
        (NaN = missing), ``pfs2_event`` int, categories lower-case ``str``,
        ``centre`` ``"unknown"`` when blank, ``irae_recurrence`` ``""`` when not assessed.
    source
        File name, or ``"<DataFrame>"``.
    extra
        Declared extra covariate columns -> ``"binary"`` or ``"continuous"``.
    """

    data: pd.DataFrame
    source: str = "<DataFrame>"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def n_patients(self) -> int:
        """Number of patients (rows)."""
        return len(self.data)

    @property
    def n_events(self) -> int:
        """Number of PFS2 events (0 for a prediction file without outcomes)."""
        return int(self.data["pfs2_event"].sum()) if "pfs2_event" in self.data else 0

    def covariates(self) -> pd.DataFrame:
        """Derived model covariates, see :func:`derive_covariates`."""
        return derive_covariates(self.data, extra=self.extra)

    def missing_report(self) -> pd.DataFrame:
        """Missing values per imputable or extra column present, indexed by column name.

        Returns
        -------
        pandas.DataFrame
            Columns ``n_missing`` (int) and ``fraction`` (float).
        """
        cols = [c for c in (*IMPUTABLE, *self.extra) if c in self.data]
        n_missing = pd.Series([int(self.data[c].isna().sum()) for c in cols],
                              index=pd.Index(cols, name="column"), dtype="int64")
        return pd.DataFrame({"n_missing": n_missing, "fraction": n_missing / self.n_patients})

    def irae_outcome(self) -> np.ndarray:
        """irAE recurrence per patient as a float code.

        Returns
        -------
        numpy.ndarray
            0 ``none``, 1 ``grade1_2``, 2 ``grade3plus``, NaN not assessed (or no column).
        """
        codes = self.data.get("irae_recurrence", [""] * self.n_patients)
        return np.array([_IRAE_CODES[v] for v in codes], dtype=float)


class _Bad(Exception):
    """An invalid cell (the caller adds row, patient and column)."""


def _is_missing(value: object) -> bool:
    if isinstance(value, str):
        return value.strip() == ""
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _show(value: object) -> str:
    value = value.item() if isinstance(value, np.generic) else value
    text = repr(value.strip() if isinstance(value, str) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _number(value: object) -> float:
    try:
        x = float(value.strip() if isinstance(value, str) else value if _real(value) else None)
    except (TypeError, ValueError):
        raise _Bad(f"{_show(value)} is not a number") from None
    if not math.isfinite(x):
        raise _Bad(f"{_show(value)} is not a finite number")
    return x


def _suggest(value: str, allowed: Iterable[str]) -> str:
    match = difflib.get_close_matches(value, list(allowed), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}? " if match else ""


def _parse(value: object, column: str, kind: str) -> object:
    """Parse one non-missing cell; raise :class:`_Bad` when invalid."""
    if kind == "absent":
        raise _Bad(f"a prediction file (outcomes=False) must leave the outcome blank, "
                   f"got {_show(value)}")
    if kind in ("id", "text"):
        return str(value.item() if isinstance(value, np.generic) else value).strip()
    if kind == "category":
        text = str(value).strip().lower()
        allowed = CATEGORIES[column]
        if text not in allowed:
            raise _Bad(f"{_show(value)} is not an allowed {column}; {_suggest(text, allowed)}"
                       f"allowed values: {', '.join(allowed)}")
        return text
    if kind == "event":
        if not (value.strip() in ("0", "1") if isinstance(value, str)
                else _real(value) and value in (0, 1)):
            raise _Bad(f"event flag must be 1 (progression or death) or 0 (censored), "
                       f"got {_show(value)}")
        return int(float(value))
    x = _number(value)
    if kind == "positive" and x <= 0:
        raise _Bad(f"must be greater than 0, got {_show(value)}")
    if kind == "nonnegative" and x < 0:
        raise _Bad(f"must not be negative, got {_show(value)}")
    if kind == "grade" and not (x.is_integer() and 0 <= x <= 4):
        raise _Bad(f"must be an integer from 0 to 4, got {_show(value)}")
    if kind == "binary" and x not in (0.0, 1.0):
        raise _Bad(f"must be 0 or 1, got {_show(value)}")
    return x


def _check_header(names: list[str], required: set[str], extra: Mapping[str, str]) -> None:
    if len(names) == 1 and (";" in names[0] or "\t" in names[0]):
        raise CohortError("the header has a single column: the file must be comma-separated")
    seen: set[str] = set()
    for i, name in enumerate(names, 1):
        if name == "":
            raise CohortError(f"header field {i} has no column name (a stray comma?)")
        if name in seen:
            raise CohortError("column appears more than once in the header", column=name)
        seen.add(name)
    for name in names:
        if name not in _KINDS and name not in extra:
            raise CohortError(f"unknown column; {_suggest(name.lower(), [*COLUMNS, *extra])}"
                              "columns outside the cohort contract must be declared as extra "
                              "covariates", column=name)
    for name in [c for c in COLUMNS if c in required] + list(extra):
        if name not in seen:
            what = "declared extra" if name in extra else "required"
            raise CohortError(f"{what} column is missing", column=name)


def _check_options(required: Iterable[str] | None, extra: Mapping[str, str] | None,
                   outcomes: bool) -> tuple[set[str], dict[str, str]]:
    req = {c for c in COLUMNS if c not in _NOT_DEFAULT} if required is None else set(required)
    unknown = req - {*COLUMNS, *(extra or {})}  # declared extras may be listed too
    if unknown:
        raise ValueError(f"required names unknown column(s) {sorted(unknown)}")
    req |= {"patient_id", *PFS2_OUTCOME} if outcomes else {"patient_id"}
    if not outcomes:
        req -= {*PFS2_OUTCOME, "irae_recurrence"}
    kinds: dict[str, str] = {}
    for name, kind in (extra or {}).items():
        kind = str(kind).strip().lower()
        if kind not in ("binary", "continuous"):
            raise ValueError(f"extra column {name!r}: kind must be 'binary' or 'continuous'")
        if name in _KINDS or name in DERIVED:
            raise ValueError(f"extra column {name!r} clashes with a contract or derived name")
        kinds[str(name)] = kind
    return req, kinds


def _validate(df: pd.DataFrame, rows: Sequence[int], required: Iterable[str] | None,
              extra: Mapping[str, str] | None, outcomes: bool, source: str) -> Cohort:
    req, extra_kinds = _check_options(required, extra, outcomes)
    names = [str(c).strip() for c in df.columns]
    _check_header(names, req, extra_kinds)
    if len(df) == 0:
        raise CohortError(f"{source} has no data rows (no patients)")
    position = {name: j for j, name in enumerate(names)}
    ids: list[str | None] = [None] * len(df)
    out: dict[str, list] = {}
    for column, kind in [*_KINDS.items(), *extra_kinds.items()]:
        if column not in position or (not outcomes and column == "irae_recurrence"):
            continue
        kind = "absent" if not outcomes and column in PFS2_OUTCOME else kind
        may_miss = (column in IMPUTABLE or column in extra_kinds or kind == "absent"
                    or (column in _BLANK and not (column == "strategy" and column in req)))
        parsed: list = []
        for i, value in enumerate(df.iloc[:, position[column]].tolist()):
            where = {"row": rows[i], "patient_id": ids[i], "column": column}
            if not _is_missing(value):
                try:
                    parsed.append(_parse(value, column, kind))
                except _Bad as exc:
                    raise CohortError(str(exc), **where) from None
            elif may_miss:
                parsed.append(_BLANK.get(column, math.nan))
            else:
                raise CohortError("missing value (empty cell); this column must be filled "
                                  "for every patient", **where)
        if column == "patient_id":
            first: dict[str, int] = {}  # patient_id -> row of its first occurrence
            for i, pid in enumerate(parsed):
                if pid in first:
                    raise CohortError(f"duplicate patient_id, already used on row {first[pid]}",
                                      row=rows[i], patient_id=pid, column=column)
                first[pid] = rows[i]
            ids = parsed
        if kind != "absent":
            out[column] = parsed
    data = pd.DataFrame({c: pd.Series(v, dtype="int64" if c == "pfs2_event" else object if
                                      _KINDS.get(c) in ("id", "text", "category") else float)
                         for c, v in out.items()})
    cohort = Cohort(data=data, source=source, extra=extra_kinds)
    if outcomes and cohort.n_events == 0:
        raise CohortError(f"no progression events in {source} (all {cohort.n_patients} "
                          "patients censored): nothing to fit", column="pfs2_event")
    return cohort


def validate_cohort(df: pd.DataFrame, *, required: Iterable[str] | None = None,
                    extra: Mapping[str, str] | None = None, outcomes: bool = True,
                    source: str = "<DataFrame>") -> Cohort:
    """Validate and normalise a cohort table.

    Parameters
    ----------
    df
        One row per patient (text or numbers); its ``k``-th row is reported as row ``k``.
    required
        Columns the model specification uses (contract columns or declared extras);
        ``None``: all contract columns but ``centre``, ``strategy`` and the irAE columns
        (``regimen_class``, ``prior_irae_grade``, ``prior_irae_organ``,
        ``irae_recurrence``). ``patient_id`` is always required, the PFS2 outcome when
        ``outcomes``. Other contract columns present are validated and kept.
    extra
        Extra covariate columns (present, blanks allowed) -> ``"binary"``/``"continuous"``.
    outcomes
        ``False`` for a prediction file: the PFS2 outcome must be absent or blank and
        ``irae_recurrence`` is ignored; they are dropped from the data.
    source
        Name used in messages and kept as :attr:`Cohort.source`.

    Returns
    -------
    Cohort

    Raises
    ------
    CohortError
        For the first problem (columns in contract order, then rows in order).
    ValueError
        For invalid ``required`` or ``extra`` arguments (programming errors).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"validate_cohort expects a pandas DataFrame, got {type(df).__name__}")
    return _validate(df, range(1, len(df) + 1), required, extra, outcomes, source)


def read_cohort(path: str | Path, *, required: Iterable[str] | None = None,
                extra: Mapping[str, str] | None = None, outcomes: bool = True) -> Cohort:
    """Read a cohort CSV file (UTF-8, every cell as text) and validate it.

    Blank lines are skipped; the row in messages is the CSV line minus 1.

    Parameters
    ----------
    path
        The CSV file (its name becomes :attr:`Cohort.source`).
    required, extra, outcomes
        As in :func:`validate_cohort`.

    Returns
    -------
    Cohort

    Raises
    ------
    CohortError
        For a missing or non-CSV file, ragged lines, no data rows or any invalid value.
    """
    path = Path(path)
    header: list[str] | None = None
    records: list[list[str]] = []
    rows: list[int] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True)
            for record in reader:
                if "\x00" in "".join(record):
                    raise csv.Error("NUL byte found: binary data, not text")
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # blank line
                if header is None:
                    header = [h.strip() for h in record]
                elif len(record) != len(header):
                    pid = dict(zip(header, record)).get("patient_id", "").strip()
                    raise CohortError(f"ragged line: {len(record)} fields but the header has "
                                      f"{len(header)}", row=reader.line_num - 1,
                                      patient_id=pid or None)
                else:
                    records.append(record)
                    rows.append(reader.line_num - 1)
    except FileNotFoundError:
        raise CohortError(f"file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise CohortError(f"{path.name} is not a UTF-8 text CSV file (undecodable byte "
                          f"at position {exc.start})") from None
    except csv.Error as exc:
        raise CohortError(f"{path.name} could not be parsed as CSV ({exc})") from None
    except OSError as exc:
        raise CohortError(f"cannot read {path}: {exc.strerror or exc}") from None
    if header is None:
        raise CohortError(f"{path.name} is empty (no header, no data rows)")
    df = pd.DataFrame(records, columns=header, dtype=object)
    return _validate(df, rows, required, extra, outcomes, path.name)


def derive_covariates(data: pd.DataFrame, *,
                      extra: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Model covariates (see :data:`DERIVED` and the module docstring).

    Parameters
    ----------
    data
        :attr:`Cohort.data` (or a table with the same normalised values).
    extra
        Declared extra columns, passed through unchanged as float.

    Returns
    -------
    pandas.DataFrame
        Float columns, index of ``data``, NaN where the source is missing; only
        covariates whose source column is present.
    """
    out: dict[str, pd.Series] = {}
    for name, (source, kind, predicate, _) in _DERIVATIONS.items():
        if source in data:
            raw = data[source]
            values = pd.to_numeric(raw) if kind == _NUM else raw.astype(str).str.strip()
            out[name] = predicate(values).astype(float).where(raw.notna() & (values != ""))
    for name in extra or {}:
        if name not in data:
            raise ValueError(f"extra column {name!r} is not in the data")
        out[name] = pd.to_numeric(data[name]).astype(float)
    return pd.DataFrame(out, index=data.index)
