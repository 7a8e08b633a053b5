"""Exceptions for user-facing errors.

Every error a user can cause (a malformed evidence row, a bad prior specification, a
corrupt file) is a :class:`RechallengeError`. The command line prints its message and
exits with a non-zero code, without a traceback; anything else is a bug.
"""

from __future__ import annotations


class RechallengeError(Exception):
    """Base class of errors caused by user input (files, arguments, specifications)."""

    exit_code = 2


class EvidenceError(RechallengeError):
    """A row of the evidence table is malformed or inconsistent.

    Parameters
    ----------
    message
        What is wrong.
    row_id
        The ``row_id`` of the offending row (or ``None`` when the row has none).
    line
        The 1-based line number in the CSV file (header is line 1).
    column
        The column at fault, when there is one.
    """

    def __init__(self, message: str, *, row_id: str | None = None,
                 line: int | None = None, column: str | None = None) -> None:
        self.row_id = row_id
        self.line = line
        self.column = column
        where = []
        if row_id:
            where.append(f"row {row_id!r}")
        if line is not None:
            where.append(f"line {line}")
        if column:
            where.append(f"column {column!r}")
        prefix = f"evidence table, {', '.join(where)}: " if where else "evidence table: "
        super().__init__(prefix + message)


class SpecError(RechallengeError):
    """A prior or model specification (YAML/JSON) is malformed."""


class CohortError(RechallengeError):
    """A cohort file (one row per rechallenged patient) is unreadable or invalid.

    Parameters
    ----------
    message
        What is wrong (the offending value may be quoted).
    row
        The 1-based data row number (CSV line minus 1; the header is row 0).
    patient_id
        The ``patient_id`` of the offending row, when it has one.
    column
        The column at fault, when there is one.
    """

    def __init__(self, message: str, *, row: int | None = None,
                 patient_id: str | None = None, column: str | None = None) -> None:
        self.row = row
        self.patient_id = patient_id
        self.column = column
        where = []
        if row is not None:
            where.append(f"row {row}" + (f" (patient {patient_id!r})" if patient_id else ""))
        elif patient_id:
            where.append(f"patient {patient_id!r}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = f"cohort file, {', '.join(where)}: " if where else "cohort file: "
        super().__init__(prefix + " ".join(str(message).splitlines()))
