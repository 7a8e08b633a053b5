"""The cohort contract: valid cohorts pass and round-trip, every bad input is one clear error."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rechallenge.cohort import (CATEGORIES, DERIVED, IMPUTABLE, PFS2_OUTCOME, Cohort,
                                derive_covariates, read_cohort, validate_cohort)
from rechallenge.errors import CohortError, RechallengeError

HEADER = ("patient_id,pfs2_months,pfs2_event,ecog,pfs1_months,tfi_months,liver_mets,nlr,"
          "discontinuation_reason,tumour_type")
ROWS = (
    "P001,4.5,1,0,6,6,0,3.8,progression,nsclc",
    "P002,12.0,0,2,5.9,6.1,1,3.79,irae,melanoma",
    "P003,7.25,1,1,10,0,0,2.5,clinical_decision,rcc",
    "P004,3.0,1,,2,12,,,progression,hcc",
)


def cohort_frame(**columns) -> pd.DataFrame:
    """A small valid cohort (as text, like a CSV); keyword arguments add or replace columns."""
    df = pd.DataFrame([r.split(",") for r in ROWS], columns=HEADER.split(","))
    for name, values in columns.items():
        df[name] = values
    return df


def write_csv(tmp_path, text: str, name: str = "cohort.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_with(tmp_path, row: int, column: str, value: str):
    """The valid cohort as a CSV file with one cell (data row ``row``, 1-based) changed."""
    df = cohort_frame()
    df.loc[row - 1, column] = value
    path = tmp_path / "cohort.csv"
    df.to_csv(path, index=False)
    return path


def assert_one_line(err: CohortError) -> str:
    message = str(err)
    assert "\n" not in message and "\r" not in message
    assert message.startswith("cohort file")
    assert "Traceback" not in message
    return message


# --- valid cohorts ---------------------------------------------------------------------

def test_valid_cohort_is_normalised():
    df = cohort_frame(centre=["A", "", " B ", "A"], tumour_type=[" NSCLC ", "Melanoma", "rcc",
                                                                 "HCC"])
    cohort = validate_cohort(df)
    data = cohort.data
    assert isinstance(cohort, Cohort) and cohort.source == "<DataFrame>"
    assert cohort.n_patients == 4 and cohort.n_events == 3
    assert list(data.index) == [0, 1, 2, 3]
    assert list(data["patient_id"]) == ["P001", "P002", "P003", "P004"]
    assert list(data["tumour_type"]) == ["nsclc", "melanoma", "rcc", "hcc"]
    assert list(data["centre"]) == ["A", "unknown", "B", "A"]
    assert data["pfs2_event"].dtype == np.int64
    for col in ("pfs2_months", *IMPUTABLE):
        assert data[col].dtype == np.float64, col
    assert data.loc[0, "pfs2_months"] == 4.5
    assert df.loc[0, "tumour_type"] == " NSCLC "  # the input is not modified


def test_numeric_dataframe_input_is_accepted():
    df = pd.DataFrame({
        "patient_id": [1, 2], "pfs2_months": [3.0, 8], "pfs2_event": [1, 0.0],
        "ecog": [0, np.nan], "pfs1_months": [2.5, None], "tfi_months": [1, 2],
        "liver_mets": [1.0, 0], "nlr": [4.2, pd.NA],
        "discontinuation_reason": ["irae", "progression"], "tumour_type": ["other", "sclc"],
    }, index=[10, 20])
    cohort = validate_cohort(df)
    assert list(cohort.data["patient_id"]) == ["1", "2"]
    assert list(cohort.data["pfs2_event"]) == [1, 0]
    assert math.isnan(cohort.data.loc[1, "ecog"]) and math.isnan(cohort.data.loc[1, "nlr"])


def test_round_trip_through_csv(tmp_path):
    df = cohort_frame(centre=["A", "", "B", "A"], strategy=["chemo"] * 4,
                      regimen_class=["pd1_pdl1", "ctla4_containing", "pd1_pdl1", "pd1_pdl1"],
                      prior_irae_grade=["0", "3", "2", "1"],
                      prior_irae_organ=["none", "colitis", "hepatitis", "endocrine"],
                      irae_recurrence=["none", "grade3plus", "", "grade1_2"])
    first = validate_cohort(df)
    path = tmp_path / "roundtrip.csv"
    first.data.to_csv(path, index=False)
    second = read_cohort(path)
    assert second.source == "roundtrip.csv"
    pd.testing.assert_frame_equal(first.data, second.data)
    pd.testing.assert_frame_equal(first.covariates(), second.covariates())


def test_read_cohort_from_text_with_bom_blank_lines_and_whitespace(tmp_path):
    text = "\ufeff" + HEADER.replace(",ecog,", ", ecog ,") + "\n" + "\n".join(ROWS) + "\n\n"
    cohort = read_cohort(write_csv(tmp_path, text))
    assert cohort.n_patients == 4 and "ecog" in cohort.data


# --- derived covariates and missing values ---------------------------------------------

def test_derived_covariates_at_the_cut_offs():
    df = cohort_frame(regimen_class=["ctla4_containing", "pd1_pdl1", "pd1_pdl1", "pd1_pdl1"],
                      prior_irae_grade=["3", "2", "4", "0"])
    cov = validate_cohort(df, required=None).covariates()
    assert list(cov.columns) == list(DERIVED)
    assert (cov.dtypes == np.float64).all()
    # P001: pfs1 exactly 6 -> 0, tfi exactly 6 -> 1, nlr exactly 3.8 -> 1, ecog 0 -> 0
    assert cov.loc[0, "pfs1_lt6"] == 0.0
    assert cov.loc[0, "tfi_le6"] == 1.0
    assert cov.loc[0, "nlr"] == 1.0
    assert cov.loc[0, "ecog_ge2"] == 0.0
    # P002: ecog 2 -> 1, pfs1 5.9 -> 1, tfi 6.1 -> 0, nlr 3.79 -> 0
    assert list(cov.loc[1, ["ecog_ge2", "pfs1_lt6", "tfi_le6", "nlr"]]) == [1.0, 1.0, 0.0, 0.0]
    assert list(cov["reason_progression"]) == [1.0, 0.0, 0.0, 1.0]
    assert list(cov["reason_irae"]) == [0.0, 1.0, 0.0, 0.0]
    assert list(cov["liver_mets"][:3]) == [0.0, 1.0, 0.0]
    assert list(cov["regimen_ctla4"]) == [1.0, 0.0, 0.0, 0.0]
    assert list(cov["prior_irae_grade3plus"]) == [1.0, 0.0, 1.0, 0.0]


def test_derived_only_from_present_columns_and_extra_passed_through():
    df = cohort_frame(albumin=["3.1", "", "40", "-2"], smoker=["1", "0", "", "1"])
    cohort = validate_cohort(df, extra={"albumin": "continuous", "smoker": "binary"})
    cov = cohort.covariates()
    assert "regimen_ctla4" not in cov and "prior_irae_grade3plus" not in cov
    assert list(cov.columns[-2:]) == ["albumin", "smoker"]
    assert cov["albumin"].tolist()[2:] == [40.0, -2.0] and math.isnan(cov.loc[1, "albumin"])
    assert math.isnan(cov.loc[2, "smoker"])
    assert derive_covariates(cohort.data).columns.tolist() == cov.columns[:-2].tolist()


def test_missing_nlr_and_ecog_stay_nan_and_are_reported():
    cohort = validate_cohort(cohort_frame())
    cov = cohort.covariates()
    for col in ("nlr", "ecog_ge2", "liver_mets"):
        assert math.isnan(cov.loc[3, col]), col
    assert not cov.loc[:2, ["nlr", "ecog_ge2"]].isna().any().any()
    report = cohort.missing_report()
    assert list(report.index) == list(IMPUTABLE)
    assert report.loc["nlr", "n_missing"] == 1 and report.loc["ecog", "n_missing"] == 1
    assert report.loc["pfs1_months", "n_missing"] == 0
    assert report.loc["nlr", "fraction"] == pytest.approx(0.25)
    assert cohort.n_patients == 4  # the incomplete patient is kept


def test_irae_outcome_codes():
    df = cohort_frame(irae_recurrence=["none", " Grade1_2", "grade3plus", ""])
    codes = validate_cohort(df).irae_outcome()
    assert codes[:3].tolist() == [0.0, 1.0, 2.0] and math.isnan(codes[3])
    assert np.isnan(validate_cohort(cohort_frame()).irae_outcome()).all()


# --- required, outcomes, extra ----------------------------------------------------------

def test_required_subset_lets_a_file_without_liver_mets_pass(tmp_path):
    path = tmp_path / "no_liver.csv"
    cohort_frame().drop(columns="liver_mets").to_csv(path, index=False)
    with pytest.raises(CohortError, match="column 'liver_mets': required column is missing"):
        read_cohort(path)
    cohort = read_cohort(path, required=["ecog", "nlr", "tumour_type"])
    assert "liver_mets" not in cohort.data and "liver_mets" not in cohort.covariates()
    assert "pfs1_months" in cohort.data  # present but not required: validated and kept


def test_present_but_not_required_columns_are_validated(tmp_path):
    with pytest.raises(CohortError, match="column 'pfs1_months'"):
        read_cohort(csv_with(tmp_path, 2, "pfs1_months", "-1"), required=["ecog"])


def test_outcomes_false_accepts_a_file_without_outcomes(tmp_path):
    path = tmp_path / "predict.csv"
    cohort_frame().drop(columns=list(PFS2_OUTCOME)).to_csv(path, index=False)
    cohort = read_cohort(path, outcomes=False)
    assert cohort.n_patients == 4 and cohort.n_events == 0
    assert not set(PFS2_OUTCOME) & set(cohort.data)
    empty = cohort_frame(pfs2_months=[""] * 4, pfs2_event=[""] * 4,
                         irae_recurrence=["junk", "", "", ""])
    assert not set(PFS2_OUTCOME) & set(validate_cohort(empty, outcomes=False).data)
    with pytest.raises(CohortError) as info:
        validate_cohort(cohort_frame(), outcomes=False)
    assert info.value.row == 1 and info.value.column == "pfs2_months"


def test_strategy_blank_allowed_only_when_not_required():
    df = cohort_frame(strategy=["chemo", "", "Dual_ICI", "triple"])
    assert list(validate_cohort(df).data["strategy"]) == ["chemo", "", "dual_ici", "triple"]
    with pytest.raises(CohortError, match=r"row 2 \(patient 'P002'\), column 'strategy'"):
        validate_cohort(df, required=["strategy"])


def test_bad_arguments_are_programming_errors():
    with pytest.raises(ValueError):
        validate_cohort(cohort_frame(), required=["ecgo"])
    with pytest.raises(ValueError):
        validate_cohort(cohort_frame(x=["1"] * 4), extra={"x": "ordinal"})


# --- bad inputs: one error each, naming row, patient and column -------------------------

BAD_CELLS = [
    # (row, column, value, words expected in the message)
    (2, "pfs2_months", "0", "greater than 0"),
    (3, "pfs2_months", "-1.5", "greater than 0"),
    (1, "pfs1_months", "-2", "must not be negative"),
    (4, "tfi_months", "-0.5", "must not be negative"),
    (2, "nlr", "high", "is not a number"),
    (3, "pfs2_months", "n/a", "is not a number"),
    (1, "pfs2_event", "2", "event flag"),
    (2, "pfs2_event", "yes", "event flag"),
    (3, "pfs2_event", "1.0", "event flag"),
    (1, "ecog", "7", "integer from 0 to 4"),
    (2, "ecog", "1.5", "integer from 0 to 4"),
    (3, "nlr", "0", "greater than 0"),
    (4, "liver_mets", "2", "must be 0 or 1"),
    (2, "pfs1_months", "inf", "finite"),
    (3, "tumour_type", "", "missing value"),
    (1, "discontinuation_reason", " ", "missing value"),
    (2, "pfs2_event", "", "missing value"),
    (4, "pfs2_months", "", "missing value"),
]


@pytest.mark.parametrize("row, column, value, words", BAD_CELLS)
def test_bad_cell_is_one_clear_error(tmp_path, row, column, value, words):
    with pytest.raises(CohortError) as info:
        read_cohort(csv_with(tmp_path, row, column, value))
    message = assert_one_line(info.value)
    pid = f"P00{row}"
    assert f"row {row} (patient '{pid}'), column '{column}'" in message
    assert words in message
    assert (info.value.row, info.value.patient_id, info.value.column) == (row, pid, column)
    assert isinstance(info.value, RechallengeError)


def test_bad_irae_columns():
    df = cohort_frame(prior_irae_grade=["0", "1", "5", "2"])
    with pytest.raises(CohortError, match=r"row 3 \(patient 'P003'\), column 'prior_irae_grade'"):
        validate_cohort(df)
    df = cohort_frame(prior_irae_organ=["none", "", "colitis", "renal"])
    with pytest.raises(CohortError, match=r"row 2 .*'prior_irae_organ': missing value"):
        validate_cohort(df)


def test_bool_is_not_an_event_flag():
    df = cohort_frame(pfs2_event=[True, False, True, True])
    with pytest.raises(CohortError, match="row 1 .*'pfs2_event'"):
        validate_cohort(df)


def test_missing_patient_id_names_the_row(tmp_path):
    with pytest.raises(CohortError) as info:
        read_cohort(csv_with(tmp_path, 3, "patient_id", ""))
    assert "row 3, column 'patient_id': missing value" in assert_one_line(info.value)


def test_duplicate_patient_id_names_both_rows(tmp_path):
    with pytest.raises(CohortError) as info:
        read_cohort(csv_with(tmp_path, 4, "patient_id", "P002"))
    message = assert_one_line(info.value)
    assert "row 4 (patient 'P002'), column 'patient_id'" in message
    assert "duplicate" in message and "row 2" in message


def test_first_error_in_contract_order_is_reported():
    # nlr (row 1) comes after pfs2_months (row 4) in the contract: pfs2_months is reported
    df = cohort_frame(nlr=["-1", "1", "1", "1"], pfs2_months=["1", "2", "3", "-4"])
    with pytest.raises(CohortError, match=r"row 4 .*column 'pfs2_months'"):
        validate_cohort(df)


def test_all_censored_is_an_error():
    df = cohort_frame(pfs2_event=["0"] * 4)
    with pytest.raises(CohortError) as info:
        validate_cohort(df)
    message = assert_one_line(info.value)
    assert "no progression events" in message and "column 'pfs2_event'" in message


def test_unknown_category_suggests_the_closest():
    df = cohort_frame(tumour_type=["nsclc", "melanoma", "nsclcc", "rcc"])
    with pytest.raises(CohortError) as info:
        validate_cohort(df)
    message = assert_one_line(info.value)
    assert "row 3 (patient 'P003'), column 'tumour_type'" in message
    assert "did you mean 'nsclc'?" in message
    assert ", ".join(CATEGORIES["tumour_type"]) in message


def test_unknown_column_is_an_error_with_suggestion():
    with pytest.raises(CohortError) as info:
        validate_cohort(cohort_frame().rename(columns={"ecog": "ECOG"}))
    message = assert_one_line(info.value)
    assert "column 'ECOG': unknown column" in message and "did you mean 'ecog'?" in message
    with pytest.raises(CohortError, match="column 'albumin': unknown column"):
        validate_cohort(cohort_frame(albumin=["1"] * 4))


def test_bad_extra_columns():
    with pytest.raises(CohortError, match=r"row 2 \(patient 'P002'\), column 'smoker'"):
        validate_cohort(cohort_frame(smoker=["1", "2", "0", ""]), extra={"smoker": "binary"})
    with pytest.raises(CohortError, match=r"row 1 .*column 'albumin'.*not a number"):
        validate_cohort(cohort_frame(albumin=["low", "2", "", "1"]),
                        extra={"albumin": "continuous"})
    with pytest.raises(CohortError, match="column 'albumin': declared extra column is missing"):
        validate_cohort(cohort_frame(), extra={"albumin": "continuous"})


def test_missing_required_column():
    with pytest.raises(CohortError) as info:
        validate_cohort(cohort_frame().drop(columns="tumour_type"))
    assert "column 'tumour_type': required column is missing" in assert_one_line(info.value)


# --- files that are not cohort CSVs -----------------------------------------------------

def test_empty_file(tmp_path):
    with pytest.raises(CohortError, match="empty.csv is empty"):
        read_cohort(write_csv(tmp_path, "", "empty.csv"))


def test_header_only(tmp_path):
    with pytest.raises(CohortError) as info:
        read_cohort(write_csv(tmp_path, HEADER + "\n"))
    assert "no data rows" in assert_one_line(info.value)


def test_binary_junk(tmp_path):
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff\xfe" * 20)
    with pytest.raises(CohortError) as info:
        read_cohort(path)
    assert "not a UTF-8 text CSV file" in assert_one_line(info.value)


def test_nul_bytes(tmp_path):
    path = tmp_path / "nul.csv"
    path.write_bytes((HEADER + "\n" + ROWS[0] + "\x00\x00\n").encode())
    with pytest.raises(CohortError, match="could not be parsed as CSV"):
        read_cohort(path)


def test_unreadable_encoding(tmp_path):
    path = tmp_path / "latin1.csv"
    text = HEADER + "\n" + "\n".join(ROWS).replace("P002", "Müller") + "\n"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(CohortError, match="not a UTF-8 text CSV file"):
        read_cohort(path)


@pytest.mark.parametrize("extra_field", [",9", ""])
def test_ragged_line(tmp_path, extra_field):
    rows = list(ROWS)
    rows[1] = rows[1] + extra_field if extra_field else rows[1].rsplit(",", 1)[0]
    path = write_csv(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(CohortError) as info:
        read_cohort(path)
    message = assert_one_line(info.value)
    assert "row 2 (patient 'P002')" in message and "ragged line" in message


def test_file_not_found(tmp_path):
    with pytest.raises(CohortError, match="file not found"):
        read_cohort(tmp_path / "nope.csv")


def test_nothing_is_printed(tmp_path, capsys):
    read_cohort(write_csv(tmp_path, HEADER + "\n" + "\n".join(ROWS) + "\n")).covariates()
    with pytest.raises(CohortError):
        read_cohort(csv_with(tmp_path, 2, "ecog", "9"))
    assert capsys.readouterr() == ("", "")


def test_semicolon_separated_file(tmp_path):
    text = HEADER.replace(",", ";") + "\n" + "\n".join(r.replace(",", ";") for r in ROWS) + "\n"
    with pytest.raises(CohortError) as info:
        read_cohort(write_csv(tmp_path, text))
    assert "must be comma-separated" in assert_one_line(info.value)


def test_header_problems(tmp_path):
    with pytest.raises(CohortError, match="column 'ecog': column appears more than once"):
        read_cohort(write_csv(tmp_path, HEADER + ",ecog\n" + "\n".join(r + ",1" for r in ROWS)))
    with pytest.raises(CohortError, match="header field 11 has no column name"):
        read_cohort(write_csv(tmp_path, HEADER + ",\n" + "\n".join(r + "," for r in ROWS)))


def test_required_may_list_declared_extras():
    df = cohort_frame(smoker=["1", "0", "", "1"])
    cohort = validate_cohort(df, required=["ecog", "smoker"], extra={"smoker": "binary"})
    assert cohort.extra == {"smoker": "binary"}
    assert cohort.missing_report().loc["smoker", "n_missing"] == 1
