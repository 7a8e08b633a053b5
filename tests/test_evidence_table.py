"""The bundled evidence table, and clear errors for malformed tables."""

from __future__ import annotations

import math

import pytest

from rechallenge.errors import EvidenceError
from rechallenge.evidence import row_effect
from rechallenge.evidence_table import outcome_of, read_evidence
from rechallenge.priors import _all_parameters, load_prior_spec

from conftest import SEEDS

SPEC = load_prior_spec()
KNOWN = _all_parameters(SPEC)
CARD_PFS2 = ("ecog_ge2", "pfs1_lt6", "tfi_le6", "liver_mets", "nlr", "reason_progression")


def read(path=None):
    return read_evidence(path, known_parameters=KNOWN, discount_names=SPEC["discounts"])


def test_bundled_table_is_valid_and_covers_every_card_predictor():
    table = read()
    used = table[table["status"] == "used"]
    for parameter in CARD_PFS2:
        assert (used["parameter"] == parameter).sum() >= 2, parameter
    assert set(table["seed"]) == {"000_56e2630f9d1661c4.txt", "002_cfd7c1ddf5a61129.txt"}


@pytest.mark.skipif(not SEEDS.exists(), reason="../shared/seeds not beside the checkout")
def test_every_snippet_is_verbatim_in_its_seed(evidence_rows):
    texts = {p.name: p.read_text(encoding="utf-8") for p in SEEDS.glob("*.txt")}
    missing = [r["row_id"] for r in evidence_rows if r["snippet"] not in texts[r["seed"]]]
    assert not missing


@pytest.mark.skipif(not SEEDS.exists(), reason="../shared/seeds not beside the checkout")
def test_every_reported_estimate_appears_in_its_snippet(evidence_rows):
    """The number in the table is the number in the review (unit conversions excepted)."""
    converted = {"E031", "E050"}  # years -> months; percentages written without '%'
    bad = []
    for r in evidence_rows:
        if not r["estimate"] or r["row_id"] in converted:
            continue
        est = float(r["estimate"])
        forms = {r["estimate"], f"{est:g}", f"{est * 100:g}", f"{est * 100:.1f}", f"{est:.1f}",
                 f"{est * 100:.2f}"}
        if not any(f in r["snippet"] for f in forms):
            bad.append(r["row_id"])
    assert not bad


def test_every_used_effect_on_a_card_predictor_is_adverse():
    """The reviews call every card predictor adverse; after direction handling each
    used row must give a log-HR > 0 for the level its parameter names (a sign error in
    the table or in the code would show up here)."""
    table = read()
    used = table[(table["status"] == "used") & table["parameter"].isin(CARD_PFS2)]
    for row in used.to_dict("records"):
        eff = row_effect(row, parameter_endpoint="pfs2", discounts=SPEC["discounts"])
        assert eff.mean > 0, (row["row_id"], eff.mean)


def test_inverted_rows_report_the_favourable_level(evidence_rows):
    for r in evidence_rows:
        if r["status"] == "used" and r["direction"] == "inverted" and r["measure"] == "HR":
            assert float(r["estimate"]) < 1, r["row_id"]


def test_endpoints_map_to_outcomes():
    assert outcome_of("os2") == "pfs2"
    assert outcome_of("irae_grade3plus") == "irae"


@pytest.mark.parametrize("change, column, message", [
    ({"E016": {"estimate": ""}}, "estimate", "missing estimate"),
    ({"E016": {"lower95": "1.90"}}, "lower95", "does not contain the estimate"),
    ({"E016": {"parameter": "tfi_le_6"}}, "parameter", "unknown covariate"),
    ({"E016": {"estimate": "abc"}}, "estimate", "not a number"),
    ({"E016": {"status": "maybe"}}, "status", "not one of"),
    ({"E016": {"n": "-5"}}, "n", "must be positive"),
    ({"E009": {"extra_discounts": ""}}, "p_value", "CI implies p"),
    ({"E016": {"extra_discounts": "made_up"}}, "extra_discounts", "unknown discount"),
    ({"E017": {"status": "used", "endpoint": "pfs2"}}, "cohort_id", "counted once"),
    ({"E047": {"estimate": "1.5"}}, "estimate", "proportion"),
])
def test_malformed_row_gets_a_clear_error_naming_the_row(write_evidence, change, column, message):
    path = write_evidence(change)
    with pytest.raises(EvidenceError, match=message) as info:
        read(path)
    row_id = next(iter(change))
    assert info.value.row_id == row_id
    assert info.value.column == column
    assert f"row {row_id!r}" in str(info.value) and "line" in str(info.value)


def test_error_reports_the_line_in_the_file(write_evidence, evidence_rows):
    path = write_evidence({"E016": {"estimate": ""}})
    line = 2 + [r["row_id"] for r in evidence_rows].index("E016")
    with pytest.raises(EvidenceError) as info:
        read(path)
    assert info.value.line == line


def test_duplicate_row_id(write_evidence, evidence_rows):
    dup = dict(evidence_rows[0])
    path = write_evidence(extra_rows=[dup])
    with pytest.raises(EvidenceError, match="duplicate row_id"):
        read(path)


def test_missing_and_unknown_columns(write_evidence, evidence_rows):
    cols = [c for c in evidence_rows[0] if c != "cohort_id"]
    with pytest.raises(EvidenceError, match="missing column"):
        read(write_evidence(columns=cols))
    path = write_evidence()
    text = path.read_text().splitlines()
    text[0] += ",surprise"
    path.write_text("\n".join(line + ("," if i else "") for i, line in enumerate(text)) + "\n")
    with pytest.raises(EvidenceError, match="unknown column"):
        read(path)


def test_file_that_is_not_a_csv(tmp_path):
    path = tmp_path / "evidence.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(EvidenceError, match="could not be read|missing column"):
        read(path)
    with pytest.raises(EvidenceError, match="not found"):
        read(tmp_path / "absent.csv")


def test_used_qualitative_row_is_rejected(write_evidence):
    with pytest.raises(EvidenceError, match="qualitative"):
        read(write_evidence({"E023": {"status": "used"}}))
