"""Shared fixtures: paths of the bundled data and helpers to write broken copies."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def evidence_rows() -> list[dict]:
    with open(REPO / "priors" / "evidence.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def write_evidence(tmp_path, evidence_rows):
    """Write a copy of the evidence table with some rows changed; returns its path.

    ``write_evidence({"E016": {"estimate": ""}})`` blanks one cell; a value of ``None``
    for a row id drops the row; ``extra_rows`` appends rows.
    """
    def _write(changes: dict | None = None, extra_rows: list[dict] | None = None,
               columns: list[str] | None = None) -> Path:
        rows = []
        for row in evidence_rows:
            change = (changes or {}).get(row["row_id"], {})
            if change is None:
                continue
            rows.append({**row, **change})
        rows += extra_rows or []
        cols = columns or list(evidence_rows[0].keys())
        path = tmp_path / "evidence.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return path
    return _write
