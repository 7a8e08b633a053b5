"""Tests of rechallenge.rules: the review's Table 1 criteria and Table 4 irAE guidance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rechallenge import rules
from rechallenge.errors import RechallengeError
from rechallenge.rules import RulesError, assess, evaluate_criteria, irae_guidance

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"
TABLE1_HEADER = "| Factor Category | Favorable Criteria |"
TABLE4_HEADER = "| Organ System | Initial irAE Grade |"


def _status(patient: dict, item: str) -> str:
    return _item(patient, item).status


def _item(patient: dict, item: str) -> rules.Criterion:
    found = [c for c in evaluate_criteria(patient) if c.id == item]
    assert len(found) == 1
    return found[0]


# --------------------------------------------------------------------------- Table 1 cut-offs


@pytest.mark.parametrize("value, expected", [
    (0.0, "unfavourable"), (5.99, "unfavourable"), (6, "favourable"), (6.0, "favourable"),
    (6.01, "favourable"), (30, "favourable")])
def test_pfs1_cutoff_six_months_is_favourable(value, expected):
    assert _status({"pfs1_months": value}, "pfs1") == expected


@pytest.mark.parametrize("value, expected", [
    (0.0, "unfavourable"), (5.99, "unfavourable"), (6, "unfavourable"),
    (6.0, "unfavourable"), (6.01, "favourable"), (24, "favourable")])
def test_tfi_cutoff_six_months_is_unfavourable(value, expected):
    assert _status({"tfi_months": value}, "tfi") == expected


@pytest.mark.parametrize("value, expected", [
    (0, "favourable"), (1, "favourable"), (2, "unfavourable"), (3, "unfavourable"),
    (4, "unfavourable")])
def test_ecog(value, expected):
    assert _status({"ecog": value}, "ecog") == expected


@pytest.mark.parametrize("value, expected", [
    ("irae", "favourable"), ("clinical_decision", "favourable"),
    ("progression", "unfavourable"), (" Progression ", "unfavourable")])
def test_discontinuation_reason(value, expected):
    assert _status({"discontinuation_reason": value}, "discontinuation_reason") == expected


@pytest.mark.parametrize("missing", [None, float("nan"), "", "  "])
@pytest.mark.parametrize("field, item", [
    ("pfs1_months", "pfs1"), ("tfi_months", "tfi"), ("ecog", "ecog"),
    ("discontinuation_reason", "discontinuation_reason")])
def test_missing_value_is_unknown(field, item, missing):
    crit = _item({field: missing}, item)
    assert crit.status == "unknown"
    assert field in crit.detail
    assert _status({}, item) == "unknown"


def test_detail_shows_value_and_table_implication():
    crit = _item({"tfi_months": 6}, "tfi")
    assert "tfi_months = 6" in crit.detail
    assert "TFI ≤ 6 months" in crit.detail
    crit = _item({"pfs1_months": 3.5}, "pfs1")
    assert "3.5" in crit.detail and "Primary refractory" in crit.detail


def test_every_item_names_table1_as_source():
    crits = evaluate_criteria({})
    assert [c.id for c in crits] == ["discontinuation_reason", "pfs1", "tfi", "irae_resolved",
                                     "no_high_grade_myocarditis", "ecog"]
    for c in crits:
        assert c.source == "Review of ICI rechallenge in solid tumours (seed 000), Table 1"


# --------------------------------------------------------------------------- irAE items


@pytest.mark.parametrize("patient, expected", [
    ({"prior_irae_grade": 0}, "favourable"),
    ({"prior_irae_organ": "none"}, "favourable"),
    ({"prior_irae_organ": "none", "prior_irae_grade": 0, "steroids_tapered": False},
     "favourable"),
    ({"prior_irae_grade": 2, "irae_resolved_grade": 1, "steroids_tapered": True},
     "favourable"),
    ({"prior_irae_grade": 2, "irae_resolved_grade": 0, "steroids_tapered": "yes"},
     "favourable"),
    ({"prior_irae_grade": 2, "irae_resolved_grade": 2, "steroids_tapered": True},
     "unfavourable"),
    ({"prior_irae_grade": 2, "irae_resolved_grade": 1, "steroids_tapered": False},
     "unfavourable"),
    ({"prior_irae_grade": 2, "steroids_tapered": False}, "unfavourable"),
    ({"prior_irae_grade": 2, "irae_resolved_grade": 1}, "unknown"),
    ({"prior_irae_grade": 2, "steroids_tapered": True}, "unknown"),
    ({"prior_irae_grade": 3}, "unknown"),
    ({}, "unknown"),
])
def test_irae_resolved(patient, expected):
    assert _status(patient, "irae_resolved") == expected


def test_no_prior_irae_detail():
    assert _item({"prior_irae_grade": 0}, "irae_resolved").detail == "no prior irAE"


def test_unresolved_grade3_irae_cites_table1_row():
    crit = _item({"prior_irae_organ": "colitis", "prior_irae_grade": 3,
                  "irae_resolved_grade": 2, "steroids_tapered": False}, "irae_resolved")
    assert crit.status == "unfavourable"
    assert "Other unresolved ≥Grade 3 irAEs" in crit.detail
    assert "Generally not recommended" in crit.detail


def test_unknown_irae_item_names_missing_fields():
    crit = _item({"prior_irae_grade": 2, "irae_resolved_grade": 1}, "irae_resolved")
    assert "steroids_tapered" in crit.detail and "irae_resolved_grade = 1" in crit.detail


@pytest.mark.parametrize("organ, grade, expected", [
    ("myocarditis", 3, "unfavourable"), ("myocarditis", 4, "unfavourable"),
    ("myocarditis", 2, "favourable"), ("myocarditis", 1, "favourable"),
    ("colitis", 4, "favourable"), ("none", 0, "favourable"),
    ("myocarditis", None, "unknown"), (None, 4, "unknown"), (None, 2, "favourable"),
    ("pneumonitis", None, "favourable"), (None, None, "unknown")])
def test_no_high_grade_myocarditis(organ, grade, expected):
    patient = {"prior_irae_organ": organ, "prior_irae_grade": grade}
    assert _status(patient, "no_high_grade_myocarditis") == expected


# --------------------------------------------------------------------------- Table 4


@pytest.mark.parametrize("grade", [3, 4])
def test_grade3plus_myocarditis_is_contraindicated(grade):
    patient = {"prior_irae_organ": "myocarditis", "prior_irae_grade": grade,
               "irae_resolved_grade": 0, "steroids_tapered": True,
               "discontinuation_reason": "irae", "pfs1_months": 20, "tfi_months": 12,
               "ecog": 0}
    result = assess(patient)
    assert result.contraindicated is True
    assert result.guidance is not None and result.guidance.recommendation == "contraindicated"
    assert result.guidance.contraindicated
    assert len(result.contraindication_reasons) == 2
    for reason in result.contraindication_reasons:
        assert "myocarditis" in reason
        assert "(seed 000), Table" in reason
    assert any("Table 1]" in r for r in result.contraindication_reasons)
    assert any("Table 4]" in r for r in result.contraindication_reasons)
    assert "Permanent discontinuation" in result.guidance.text
    # every other Table 1 item is favourable: the contraindication does not hide them
    statuses = {c.id: c.status for c in result.criteria}
    assert statuses.pop("no_high_grade_myocarditis") == "unfavourable"
    assert set(statuses.values()) == {"favourable"}


@pytest.mark.parametrize("grade", [1, 2])
def test_low_grade_myocarditis_per_table4(grade):
    # Table 4 has a myocarditis row only for grade 3-4: grade 1-2 is not covered.
    g = irae_guidance("myocarditis", grade)
    assert g.recommendation == "no grade-specific guidance"
    assert not g.contraindicated
    assert g.recurrence_risk is None
    assert "grade 3-4" in g.text and "absolute contraindication" in g.text
    assert g.source.endswith("Section 3.4")
    result = assess({"prior_irae_organ": "myocarditis", "prior_irae_grade": grade})
    assert result.contraindicated is False and result.contraindication_reasons == ()


@pytest.mark.parametrize("organ, grade, recommendation, risk", [
    ("colitis", 1, "rechallenge possible", "Low"),
    ("colitis", 3, "rechallenge with caution", "Moderate (~20-30%)"),
    ("pneumonitis", 2, "rechallenge with caution", "Moderate"),
    ("pneumonitis", 3, "generally contraindicated", "High"),
    ("hepatitis", 2, "rechallenge possible", "Low"),
    ("hepatitis", 4, "rechallenge with caution", "Moderate (~20-30%)"),
    ("endocrine", 4, "rechallenge possible", "Generally Low"),
    ("dermatologic", 2, "rechallenge possible", "Moderate"),
    ("dermatologic", 3, "rechallenge with caution", "High"),
    ("renal", 3, "no organ-specific guidance", None),
    ("other", 1, "no organ-specific guidance", None),
    ("none", 0, "not applicable", None),
])
def test_guidance_table(organ, grade, recommendation, risk):
    g = irae_guidance(organ, grade)
    assert (g.organ, g.grade, g.recommendation, g.recurrence_risk) == (
        organ, grade, recommendation, risk)


def test_generally_contraindicated_is_not_absolute():
    result = assess({"prior_irae_organ": "pneumonitis", "prior_irae_grade": 4})
    assert result.guidance.recommendation == "generally contraindicated"
    assert result.contraindicated is False


def test_every_contract_organ_and_grade_has_guidance():
    for organ in rules.IRAE_ORGANS:
        for grade in ([0] if organ == "none" else [1, 2, 3, 4]):
            g = irae_guidance(organ, grade)
            assert g.recommendation in rules.RECOMMENDATIONS
            assert g.text.strip() and "(seed 000)" in g.source
            assert g.contraindicated == (organ == "myocarditis" and grade >= 3)


def test_organs_outside_table4_say_so():
    for organ in ("renal", "other"):
        g = irae_guidance(organ, 2)
        assert g.recommendation == "no organ-specific guidance"
        assert "Table 4 has no row" in g.text
    assert "Rare irAEs" in irae_guidance("other", 4).text


def test_guidance_is_case_and_space_insensitive():
    assert irae_guidance(" Colitis ", 2.0) == irae_guidance("colitis", 2)


def test_assess_without_irae_fields_has_no_guidance():
    result = assess({"pfs1_months": 10})
    assert result.guidance is None and result.contraindicated is False


# --------------------------------------------------------------------------- output


def test_to_dict_is_json_ready():
    result = assess({"discontinuation_reason": "progression", "pfs1_months": 4,
                     "tfi_months": float("nan"), "ecog": 2, "prior_irae_organ": "hepatitis",
                     "prior_irae_grade": 3, "irae_resolved_grade": 1,
                     "steroids_tapered": True})
    d = json.loads(json.dumps(result.to_dict()))
    assert set(d) == {"criteria", "guidance", "contraindicated", "contraindication_reasons"}
    assert d["contraindicated"] is False
    by_id = {c["id"]: c for c in d["criteria"]}
    for c in d["criteria"]:
        assert set(c) == {"id", "criterion", "status", "source", "detail"}
    assert by_id["discontinuation_reason"]["status"] == "unfavourable"
    assert by_id["pfs1"]["status"] == "unfavourable"
    assert by_id["tfi"]["status"] == "unknown"
    assert by_id["ecog"]["status"] == "unfavourable"
    assert by_id["irae_resolved"]["status"] == "favourable"
    assert d["guidance"]["recommendation"] == "rechallenge with caution"
    assert d["guidance"]["text"] == "Caution. Requires normalized LFTs and specialist evaluation."


def test_assessment_is_immutable():
    result = assess({})
    with pytest.raises(AttributeError):
        result.contraindicated = True  # type: ignore[misc]
    assert isinstance(result.criteria, tuple)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("patient, field", [
    ({"prior_irae_organ": "colitits"}, "prior_irae_organ"),
    ({"prior_irae_organ": 3}, "prior_irae_organ"),
    ({"discontinuation_reason": "PD"}, "discontinuation_reason"),
    ({"prior_irae_grade": 5}, "prior_irae_grade"),
    ({"prior_irae_grade": -1}, "prior_irae_grade"),
    ({"prior_irae_grade": 2.5}, "prior_irae_grade"),
    ({"irae_resolved_grade": 7}, "irae_resolved_grade"),
    ({"ecog": 5}, "ecog"),
    ({"ecog": True}, "ecog"),
    ({"pfs1_months": -0.1}, "pfs1_months"),
    ({"tfi_months": -3}, "tfi_months"),
    ({"tfi_months": float("inf")}, "tfi_months"),
    ({"tfi_months": "six"}, "tfi_months"),
    ({"steroids_tapered": "maybe"}, "steroids_tapered"),
    ({"prior_irae_organ": "none", "prior_irae_grade": 2}, "prior_irae_grade"),
    ({"prior_irae_organ": "colitis", "prior_irae_grade": 0}, "prior_irae_organ"),
    ({"prior_irae_grade": 1, "irae_resolved_grade": 2}, "irae_resolved_grade"),
])
def test_bad_input_names_the_field(patient, field):
    for func in (evaluate_criteria, assess):
        with pytest.raises(RulesError, match=f"'{field}'") as info:
            func(patient)
        assert info.value.field == field
        assert isinstance(info.value, RechallengeError)


def test_misspelt_organ_suggests_the_category():
    with pytest.raises(RulesError, match="did you mean 'colitis'"):
        evaluate_criteria({"prior_irae_organ": "colitits"})


@pytest.mark.parametrize("organ, grade, field", [
    ("kidney", 2, "prior_irae_organ"), ("colitis", 7, "prior_irae_grade"),
    ("colitis", -1, "prior_irae_grade"), ("colitis", None, "prior_irae_grade"),
    (None, 2, "prior_irae_organ"), ("none", 3, "prior_irae_grade"),
    ("renal", 0, "prior_irae_organ")])
def test_bad_guidance_input(organ, grade, field):
    with pytest.raises(RulesError, match=f"'{field}'"):
        irae_guidance(organ, grade)


def test_not_a_mapping():
    with pytest.raises(RulesError, match="mapping"):
        evaluate_criteria(["pfs1_months", 6])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- data sources


def test_demo_cohort_rows_are_accepted():
    import pandas as pd

    from rechallenge.cohort import CATEGORIES

    assert rules.DISCONTINUATION_REASONS == CATEGORIES["discontinuation_reason"]
    assert rules.IRAE_ORGANS == CATEGORIES["prior_irae_organ"]
    frame = pd.read_csv(rules.CRITERIA_FILE.parent / "demo_cohort_synthetic.csv")
    frame.loc[0, "nlr"] = pd.NA
    n_contra = 0
    for _, row in frame.iterrows():  # pandas rows with numpy scalars
        result = assess(row)
        n_contra += result.contraindicated
        assert result.guidance is not None
        expected = row["prior_irae_organ"] == "myocarditis" and row["prior_irae_grade"] >= 3
        assert result.contraindicated == expected
    assert n_contra == int(((frame.prior_irae_organ == "myocarditis")
                            & (frame.prior_irae_grade >= 3)).sum())


def test_import_is_light():
    code = ("import sys, rechallenge.rules as r; r.load_criteria(); "
            "print(sorted(m for m in ('pymc', 'pandas', 'numpy', 'arviz') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]"


def test_criteria_file_ships_in_package_and_loads_once():
    assert rules.CRITERIA_FILE.is_file()
    assert rules.CRITERIA_FILE.parent == Path(rules.__file__).resolve().parent / "data"
    assert rules.load_criteria() is rules.load_criteria()


def _norm(text: str) -> str:
    return " ".join(text.split())


def _cells(line: str) -> list[str]:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    while cells and not cells[-1]:
        cells.pop()
    return cells


def _table(text: str, header_marker: str) -> list[tuple[str, ...]]:
    """Rows of a markdown table in the seed: (first column carried down, other cells).

    A continuation row (one cell short) belongs to the category/organ above it; the
    last column (references) is dropped.
    """
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if header_marker in line)
    header = _cells(lines[start][lines[start].index("|"):])
    assert set(lines[start + 1]) <= set("|-")
    rows, current = [], None
    for k in range(start + 2, len(lines)):
        line = lines[k]
        if not line.startswith("|") or (k + 1 < len(lines) and lines[k + 1].startswith("|---")):
            break  # end of table, or the header of the next table
        cells = _cells(line)
        if len(cells) == len(header):
            current, cells = cells[0], cells[1:]
        assert len(cells) == len(header) - 1, line
        rows.append((current, *cells[:-1]))
    return rows


@pytest.fixture(scope="module")
def seeds() -> dict[str, str]:
    if not SEEDS.is_dir():
        pytest.skip(f"seed texts not available at {SEEDS}")
    raw = yaml.safe_load(rules.CRITERIA_FILE.read_text(encoding="utf-8"))
    return {key: (SEEDS / info["file"]).read_text(encoding="utf-8")
            for key, info in raw["reviews"].items()}


def test_table1_items_are_cells_of_table1(seeds):
    rows = _table(seeds["seed000"], TABLE1_HEADER)
    assert len(rows) == 11  # 5 factor categories, 11 rows
    cells = {row[1]: row for row in rows}  # criterion cell -> (category, criterion, implication)
    used = set()
    for spec in rules.load_criteria().criteria:
        assert spec.source.is_table and spec.source.where == "Table 1"
        assert spec.source.quote in cells, spec.id
        category = cells[spec.source.quote][0]
        tr = spec.table_row
        if "favourable" in tr:
            assert tr["favourable"] == cells[spec.source.quote][2], spec.id
        unfav = cells[tr["unfavourable_criterion"]]
        assert unfav[0] == category and unfav[2] == tr["unfavourable"], spec.id
        used |= {spec.source.quote, tr["unfavourable_criterion"]}
    assert used == set(cells)  # every Table 1 row is represented


def test_table4_entries_are_rows_of_table4(seeds):
    rows = _table(seeds["seed000"], TABLE4_HEADER)
    assert len(rows) == 11
    used = set()
    for spec in rules.load_criteria().guidance:
        src = spec.source
        if src.is_table and spec.table_grade is not None:
            row = (spec.row, spec.table_grade, spec.recurrence_risk, spec.text)
            assert row in rows, (spec.organ, spec.grades)
            assert src.quote == spec.text
            used.add(row)
        elif src.is_table:  # quotes a row without being it ("other" -> "Rare irAEs")
            match = [r for r in rows if r[0] == spec.row and r[3] == src.quote]
            assert len(match) == 1, spec.organ
            used.add(match[0])
    assert used == set(rows)  # every Table 4 row is represented


def test_every_quote_is_verbatim_in_its_seed(seeds):
    spec = rules.load_criteria()
    sources = [c.source for c in spec.criteria] + [g.source for g in spec.guidance]
    for src in sources:
        assert _norm(src.quote) in _norm(seeds[src.review]), src.quote
        assert src.file in {p.name for p in SEEDS.iterdir()}
    for c in spec.criteria:
        for text in c.table_row.values():
            assert _norm(text) in _norm(seeds[c.source.review]), text
    for g in spec.guidance:
        if g.recommendation in ("no grade-specific guidance", "no organ-specific guidance"):
            assert _norm(g.source.quote) in _norm(g.text)  # the text shows the quote


def test_cutoff_wording_in_seed(seeds):
    """The directions at exactly 6 months come from the review's wording."""
    text = _norm(seeds["seed000"])
    assert "PFS1 ≥ 6 months" in text and "PFS1 < 6 months" in text
    assert "TFI > 6 months" in text and "TFI ≤ 6 months" in text
    assert "TFI ≤ 6 months is an independent risk factor" in text
    ops = {c.id: (c.op, c.value) for c in rules.load_criteria().criteria}
    assert ops["pfs1"] == (">=", 6) and ops["tfi"] == (">", 6) and ops["ecog"] == ("<=", 1)
