"""Write a cohort as CSV text in the contract's format, deterministically.

Fixed decimals (months 3, NLR 2), integers as integers, empty cells for missing values
and ``\\n`` line ends, so the same data always give the same bytes (the bundled demo
cohort is checked byte for byte).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pandas as pd

from .errors import RechallengeError

MONTHS_DECIMALS = 3
NLR_DECIMALS = 2



_DECIMALS = {"pfs2_months": MONTHS_DECIMALS, "pfs1_months": MONTHS_DECIMALS,
             "tfi_months": MONTHS_DECIMALS, "nlr": NLR_DECIMALS}
_INTEGER = {"pfs2_event", "ecog", "liver_mets", "prior_irae_grade"}
_MAX_INFERRED_DECIMALS = 6


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _format_int(value: Any, column: str) -> str:
    x = float(value)
    if x != round(x):
        raise RechallengeError(f"column {column!r}: {value!r} is not an integer")
    return str(int(round(x)))


def _format_fixed(value: Any, decimals: int) -> str:
    text = f"{float(value):.{decimals}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    return text


def _column_formatter(name: str, series: pd.Series):
    if name in _DECIMALS:
        d = _DECIMALS[name]
        return lambda v: _format_fixed(v, d)
    if name in _INTEGER:
        return lambda v: _format_int(v, name)
    if pd.api.types.is_bool_dtype(series.dtype):
        return lambda v: str(int(bool(v)))
    if pd.api.types.is_integer_dtype(series.dtype):
        return lambda v: str(int(v))
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.dropna().to_numpy(dtype=float)
        for d in range(_MAX_INFERRED_DECIMALS + 1):
            if np.all(np.abs(np.round(values, d) - values) <= 1e-9 * np.maximum(1.0, np.abs(values))):
                break
        if d == 0:
            return lambda v: _format_int(v, name)
        return lambda v: _format_fixed(v, d)
    return str


def to_csv_text(data: pd.DataFrame) -> str:
    """Deterministic CSV text of a cohort.

    Months are written with 3 decimals, NLR with 2, integer columns (``pfs2_event``,
    ``ecog``, ``liver_mets``, ``prior_irae_grade`` and integer-valued extra columns) as
    integers, other float columns with the fewest decimals (at most 6) that represent
    them, text as is; missing values are empty cells; lines end with ``\\n``. The
    columns are written in the frame's order.

    Parameters
    ----------
    data
        The cohort, e.g. ``SimulatedCohort.data``.

    Returns
    -------
    str
        The CSV text, header included.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    columns = [str(c) for c in data.columns]
    writer.writerow(columns)
    formatters = [_column_formatter(c, data[c]) for c in columns]
    cells = []
    for col, fmt in zip(columns, formatters):
        cells.append(["" if _is_missing(v) else fmt(v) for v in data[col].tolist()])
    for row in zip(*cells):
        writer.writerow(row)
    return buffer.getvalue()
