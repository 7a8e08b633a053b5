"""PriorSet: built from the evidence, traceable, serialisable, overridable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rechallenge.errors import SpecError
from rechallenge.evidence import row_effect
from rechallenge.evidence_table import read_evidence
from rechallenge.mixture import NormalMixture
from rechallenge.priors import (_all_parameters, build_prior_set, literature_priors,
                                load_prior_spec, resolve_priors, vague_priors)
from rechallenge.priorset import PriorSet

SPEC = load_prior_spec()
TABLE = read_evidence(known_parameters=_all_parameters(SPEC), discount_names=SPEC["discounts"])
CARD = ("ecog_ge2", "pfs1_lt6", "tfi_le6", "liver_mets", "nlr")


@pytest.fixture(scope="module")
def literature() -> PriorSet:
    return literature_priors()


def test_every_specified_parameter_has_a_prior(literature):
    for outcome, params in SPEC["parameters"].items():
        assert literature.parameters(outcome) == list(params)
    for name in CARD:
        assert literature[("pfs2", name)].measure == "HR"


def test_every_hr_refers_to_the_adverse_level_named_by_its_parameter(literature):
    """Each card predictor's prior puts most mass on HR > 1 for the level it names."""
    for name in CARD + ("reason_progression",):
        entry = literature[("pfs2", name)]
        assert entry.adverse_level
        assert entry.quantiles(0.5) > 1.0, name
        # P(HR > 1) under the prior
        assert 1 - entry.distribution.cdf(0.0) > 0.6, name


def test_every_used_row_is_in_exactly_one_entry(literature):
    used = set(TABLE.loc[TABLE["status"] == "used", "row_id"])
    pooled = ("meta_analytic_predictive", "single_study")
    cited = [r for e in literature for r in e.rows if e.method in pooled]
    assert sorted(cited) == sorted(used)
    for entry in literature:
        if entry.method in pooled:
            assert len(entry.sources) == entry.n_studies
            assert all("ref" in s for s in entry.sources)


def test_one_study_reduces_to_its_discounted_estimate(literature):
    shape = literature[("pfs2", "weibull_shape")]
    row = TABLE[TABLE["row_id"] == "B002"].to_dict("records")[0]
    eff = row_effect(row, parameter_endpoint="pfs2", discounts=SPEC["discounts"])
    assert shape.n_studies == 1 and shape.distribution.n_components == 1
    assert shape.distribution.mean == pytest.approx(eff.mean, abs=1e-9)
    assert shape.distribution.sd == pytest.approx(eff.se, abs=1e-9)
    assert "extrapolation" in shape.discounts["B002"]


def test_discounts_and_robust_weight_widen_the_prior():
    full, _ = build_prior_set(SPEC, TABLE)
    no_discount, _ = build_prior_set(SPEC, TABLE, apply_discounts=False)
    no_robust, _ = build_prior_set(SPEC, TABLE, robust_weight=0.0)
    # One study: the discount inflates its variance directly (univariate, factor 1.5).
    key = ("irae", "regimen_ctla4")
    raw = no_discount[key].distribution.sds[0]
    assert full[key].distribution.sds[0] == pytest.approx(raw * math.sqrt(1.5))
    # Pooled priors need not narrow without discounts: undiscounted studies disagree
    # more, so tau grows. The robust component always widens and lowers the ESS.
    for name in ("pfs1_lt6", "liver_mets", "tfi_le6", "ecog_ge2", "nlr"):
        key = ("pfs2", name)
        assert no_robust[key].distribution.sd < full[key].distribution.sd
        assert no_robust[key].ess > full[key].ess


def test_judgement_prior_takes_the_spec_numbers_and_cites_direction_rows(literature):
    entry = literature[("irae", "prior_irae_grade3plus")]
    j = SPEC["parameters"]["irae"]["prior_irae_grade3plus"]["judgement"]
    assert entry.method == "judgement"
    assert entry.quantiles(0.5) == pytest.approx(j["median"])
    assert entry.distribution.sd == pytest.approx(j["sd_log"])
    assert entry.rows == ("E044",)


def test_derived_tumour_type_scale(literature):
    entry = literature[("pfs2", "sigma_tumour_type")]
    k = literature[("pfs2", "weibull_shape")].quantiles(0.5)
    assert entry.halfnormal_scale == pytest.approx(entry.tau_median * k)
    # half-normal median = scale * Φ⁻¹(0.75)
    assert entry.quantiles(0.5) == pytest.approx(entry.halfnormal_scale * 0.6744897501960817)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_load_round_trip(tmp_path, literature, suffix):
    path = tmp_path / f"priors{suffix}"
    literature.save(path)
    again = PriorSet.load(path)
    assert again.hash() == literature.hash()
    for a, b in zip(literature, again):
        sa, sb = a.summary(), b.summary()
        for k in ("median", "lower95", "upper95"):
            assert sa[k] == pytest.approx(sb[k], rel=1e-9)
        assert sa["sources"] == sb["sources"] and sa["rows"] == sb["rows"]


def test_override_changes_one_entry_and_not_the_original(literature):
    before = literature.hash()
    changed = literature.override("pfs2", "nlr", median=2.0, sd=0.3)
    assert literature.hash() == before
    assert changed.hash() != before
    assert changed[("pfs2", "nlr")].method == "user"
    assert changed[("pfs2", "nlr")].quantiles(0.5) == pytest.approx(2.0)
    assert changed[("pfs2", "ecog_ge2")].summary() == literature[("pfs2", "ecog_ge2")].summary()
    prob = literature.override("irae", "baseline_any", median=0.25, sd=0.2)
    assert prob[("irae", "baseline_any")].quantiles(0.5) == pytest.approx(0.25)
    with pytest.raises(SpecError):
        literature.override("pfs2", "nlr", median=2.0)


def test_vague_set_covers_the_same_parameters(literature):
    vague = vague_priors()
    assert [e.key for e in vague] == [e.key for e in literature]
    for name in CARD:
        assert vague[("pfs2", name)].distribution.sd > literature[("pfs2", name)].distribution.sd


def test_resolve_priors(tmp_path, literature):
    assert resolve_priors("vague").name == "vague"
    assert resolve_priors(literature) is literature
    with pytest.raises(SpecError, match="not 'literature'"):
        resolve_priors(tmp_path / "nope.yaml")


@pytest.mark.parametrize("content, match", [
    ("entries: [", "prior set .*bad.yaml is not valid YAML"),
    ("{\"format_version\": 1, \"entries\": [{\"parameter\": 3}]}", ""),
    ("{\"format_version\": 1, ", "prior set .*bad.json is not valid JSON"),
    ("- just a list", ""),
])
def test_corrupt_prior_file_is_a_clear_error(tmp_path, content, match):
    path = tmp_path / ("bad.json" if content.startswith("{") else "bad.yaml")
    path.write_text(content)
    with pytest.raises(SpecError, match=match):
        PriorSet.load(path)
    with pytest.raises(SpecError, match="cannot read prior set"):
        PriorSet.load(tmp_path / "absent.yaml")


def test_bad_spec_is_a_clear_error(tmp_path, repo):
    text = (repo / "priors" / "default.yaml").read_text().replace("other_endpoint: 2.0", "other_endpoint: 0.5")
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match="other_endpoint"):
        load_prior_spec(path)


def test_ess_of_a_single_normal_is_the_information_ratio(literature):
    entry = literature[("pfs2", "weibull_shape")]  # no ESS (no unit information for a shape)
    assert entry.ess is None
    base = literature[("irae", "baseline_any")]
    p = float(base.quantiles(0.5))
    if base.distribution.n_components == 1:
        expected = (1 / (p * (1 - p))) / base.distribution.var
        assert base.ess == pytest.approx(expected, rel=1e-3)
    assert base.ess_unit == "patients"
