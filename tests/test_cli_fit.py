"""`rechallenge fit` on bad cohort files: one clear error naming row and column, exit
code != 0, no traceback, and no output file written or overwritten."""

from __future__ import annotations

import pytest

from rechallenge.simulate import demo_cohort, to_csv_text

from test_cli import run


@pytest.fixture(scope="module")
def good_rows() -> list[str]:
    return to_csv_text(demo_cohort().data.head(40)).splitlines()


def _write(tmp_path, lines: list[str]):
    path = tmp_path / "cohort.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _set(lines: list[str], row: int, column: str, value: str) -> list[str]:
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    return lines[:row] + [",".join(cells)] + lines[row + 1:]


@pytest.mark.parametrize("column, value, expect", [
    ("pfs2_months", "-2.5", "pfs2_months"),
    ("pfs2_months", "0", "pfs2_months"),
    ("pfs2_event", "2", "pfs2_event"),
    ("pfs2_event", "yes", "pfs2_event"),
    ("ecog", "7", "ecog"),
    ("nlr", "0", "nlr"),
    ("nlr", "-1.2", "nlr"),
    ("tumour_type", "nsclcc", "did you mean 'nsclc'"),
    ("discontinuation_reason", "toxicity", "discontinuation_reason"),
])
def test_bad_value_is_named(tmp_path, good_rows, column, value, expect):
    cohort = _write(tmp_path, _set(good_rows, 5, column, value))
    out = tmp_path / "fit.nc"
    out.write_bytes(b"previous fit")
    result = run("fit", str(cohort), "--out", str(out), "--no-progress")
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert "row 5" in result.stderr and column in result.stderr and expect in result.stderr
    assert out.read_bytes() == b"previous fit"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.csv", "fit.nc"]


def test_missing_required_column(tmp_path, good_rows):
    header = good_rows[0].split(",")
    drop = header.index("tfi_months")
    lines = [",".join(c for i, c in enumerate(line.split(",")) if i != drop) for line in good_rows]
    result = run("fit", str(_write(tmp_path, lines)), "--out", str(tmp_path / "f.nc"))
    assert result.returncode == 2 and "tfi_months" in result.stderr
    assert not (tmp_path / "f.nc").exists()


def test_duplicate_patient_id(tmp_path, good_rows):
    lines = _set(good_rows, 9, "patient_id", good_rows[3].split(",")[0])
    result = run("fit", str(_write(tmp_path, lines)), "--out", str(tmp_path / "f.nc"))
    assert result.returncode == 2 and "duplicate" in result.stderr and "row 9" in result.stderr


def test_all_censored(tmp_path, good_rows):
    lines = good_rows[:1] + [",".join(_set(good_rows, r, "pfs2_event", "0")[r].split(","))
                             for r in range(1, len(good_rows))]
    result = run("fit", str(_write(tmp_path, lines)), "--out", str(tmp_path / "f.nc"))
    assert result.returncode == 2 and "censored" in result.stderr.lower()


def test_not_a_csv(tmp_path):
    path = tmp_path / "cohort.csv"
    path.write_bytes(bytes(range(256)) * 8)
    result = run("fit", str(path), "--out", str(tmp_path / "f.nc"))
    assert result.returncode == 2 and result.stderr.startswith("error:")
    assert "Traceback" not in result.stderr and not (tmp_path / "f.nc").exists()


def test_output_must_be_netcdf(tmp_path, good_rows):
    result = run("fit", str(_write(tmp_path, good_rows)), "--out", str(tmp_path / "f.pkl"))
    assert result.returncode == 2 and "NetCDF" in result.stderr


@pytest.mark.parametrize("value", ["1", "0", "-0.5", "nan"])
def test_target_accept_outside_0_1_is_refused_before_fitting(tmp_path, good_rows, value):
    out = tmp_path / "f.nc"
    result = run("fit", str(_write(tmp_path, good_rows)), "--out", str(out), "--target-accept", value)
    assert result.returncode == 2 and "target_accept must be" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_fit_demo_end_to_end(tmp_path):
    """What `make demo` does: fit the bundled synthetic cohort, print the report, save."""
    from rechallenge.fitio import load

    out = tmp_path / "demo.nc"
    result = run("fit", "demo", "--out", str(out), "--draws", "300", "--tune", "300",
                 "--chains", "2", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SYNTHETIC" in result.stderr
    assert "ecog_ge2" in result.stdout and "posterior (95% CrI)" in result.stdout
    idata = load(out)
    assert int(idata.attrs["n_patients"]) == 300
