"""Tests of the cohort simulator (rechallenge.simulate).

Statistical checks compare the simulator with closed-form quantities of the model or
with an independent estimator (lifelines), never with stored outputs of the simulator.
Each uses a fixed seed, so it is deterministic; tolerances are about 3 standard errors.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import logit

from rechallenge import simulate as sim
from rechallenge.simulate import (
    Censoring, CovariateSpec, SimulationError, Truth, default_truth, demo_cohort,
    derive_covariates, simulate_cohort, to_csv_text,
)

DATA_DIR = Path(sim.__file__).resolve().parent / "data"

CONTRACT = [
    "patient_id", "pfs2_months", "pfs2_event", "ecog", "pfs1_months", "tfi_months",
    "liver_mets", "nlr", "discontinuation_reason", "tumour_type", "centre", "strategy",
    "regimen_class", "prior_irae_grade", "prior_irae_organ", "irae_recurrence",
]
NO_CENSORING = Censoring(accrual_months=0.0, follow_up_months=1e7, dropout_rate=0.0)


def expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def null_truth(**changes) -> Truth:
    """Default truth with every coefficient 0 and no group effects."""
    t = default_truth()
    base = replace(t, beta={k: 0.0 for k in t.beta}, gamma={k: 0.0 for k in t.gamma},
                   sigma_tumour=0.0, sigma_centre=0.0, sigma_tumour_irae=0.0, sigma_organ=0.0)
    return replace(base, **changes)


def reference_derivation(row: dict) -> dict:
    """The derived-covariate rules written out independently of the simulator."""
    def missing(v):
        return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA
    def ind(v, rule):
        return float("nan") if missing(v) else float(rule(v))
    return {
        "ecog_ge2": ind(row["ecog"], lambda v: v >= 2),
        "pfs1_lt6": ind(row["pfs1_months"], lambda v: v < 6),
        "tfi_le6": ind(row["tfi_months"], lambda v: v <= 6),
        "liver_mets": ind(row["liver_mets"], lambda v: v == 1),
        "nlr": ind(row["nlr"], lambda v: v >= 3.8),
        "reason_progression": float(row["discontinuation_reason"] == "progression"),
        "reason_irae": float(row["discontinuation_reason"] == "irae"),
        "regimen_ctla4": float(row["regimen_class"] == "ctla4_containing"),
        "prior_irae_grade3plus": ind(row["prior_irae_grade"], lambda v: v >= 3),
    }


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_csv_and_different_seed_differs():
    kwargs = dict(missing={"nlr": 0.2, "ecog": 0.1}, n_centres=4, extra={"sex": "binary", "age": "continuous"})
    a = to_csv_text(simulate_cohort(200, seed=7, **kwargs).data)
    b = to_csv_text(simulate_cohort(200, seed=7, **kwargs).data)
    c = to_csv_text(simulate_cohort(200, seed=8, **kwargs).data)
    assert a == b
    assert a != c
    assert a.endswith("\n") and "\r" not in a


def test_bundled_demo_csv_is_demo_cohort_byte_for_byte():
    bundled = (DATA_DIR / "demo_cohort_synthetic.csv").read_bytes()
    assert bundled == to_csv_text(demo_cohort().data).encode("utf-8")


def test_demo_readme_says_synthetic_and_lists_the_truth():
    text = (DATA_DIR / "README.md").read_text(encoding="utf-8").replace("\u2212", "-")
    assert "SYNTHETIC" in text and str(sim.DEMO_SEED) in text and "demo_cohort" in text
    truth = default_truth()
    for table in (truth.beta, truth.gamma):
        for name, value in table.items():
            lines = [ln for ln in text.splitlines() if ln.startswith(f"| `{name}`")]
            assert any(f"| {math.exp(value):.2f} | {value:.4f} |" in ln for ln in lines), name
    realised = demo_cohort().truth
    for effects in (realised.tumour_effects, realised.centre_effects):
        for level, value in effects.items():
            assert f"{level} {value:+.3f}" in text


def test_realised_truth_reproduces_the_cohort():
    first = simulate_cohort(300, seed=3, n_centres=5)
    again = simulate_cohort(300, seed=3, n_centres=5, truth=first.truth)
    assert to_csv_text(first.data) == to_csv_text(again.data)
    # group effects really enter: shifting one tumour effect changes that tumour's times only
    effects = dict(first.truth.tumour_effects)
    effects["nsclc"] += 1.0
    moved = simulate_cohort(300, seed=3, n_centres=5,
                            truth=replace(first.truth, tumour_effects=effects)).data
    nsclc = first.data["tumour_type"] == "nsclc"
    assert (moved.loc[nsclc, "pfs2_months"] <= first.data.loc[nsclc, "pfs2_months"]).all()
    assert (moved.loc[nsclc, "pfs2_months"] < first.data.loc[nsclc, "pfs2_months"]).any()
    pd.testing.assert_series_equal(moved.loc[~nsclc, "pfs2_months"], first.data.loc[~nsclc, "pfs2_months"])


def test_missing_settings_and_zero_extras_do_not_change_other_draws():
    base = simulate_cohort(500, seed=11).data
    with_missing = simulate_cohort(500, seed=11, missing={"nlr": 0.3, "tfi_months": 0.2},
                                   missing_mechanism="mar", irae_assessed_fraction=0.5).data
    outcomes = ["pfs2_months", "pfs2_event", "ecog", "tumour_type", "prior_irae_organ"]
    pd.testing.assert_frame_equal(base[outcomes], with_missing[outcomes])
    assert with_missing["irae_recurrence"].isna().sum() > base["irae_recurrence"].isna().sum()
    with_extra = simulate_cohort(500, seed=11, extra={"sex": "binary", "age": "continuous"}).data
    assert list(with_extra.columns) == CONTRACT + ["age", "sex"]
    pd.testing.assert_frame_equal(base, with_extra[CONTRACT])


# --------------------------------------------------------------------------- contract


def test_columns_categories_and_organ_rule():
    data = simulate_cohort(3000, seed=5, n_centres=4, missing={"nlr": 0.2, "ecog": 0.2}).data
    text = to_csv_text(data)
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert list(back.columns) == CONTRACT
    assert len(back) == 3000
    assert back["patient_id"].is_unique and back["patient_id"].str.fullmatch(r"P\d{4}").all()
    assert back["patient_id"].iloc[0] == "P0001"
    assert set(back["discontinuation_reason"]) <= {"progression", "irae", "clinical_decision"}
    assert set(back["tumour_type"]) <= {"nsclc", "melanoma", "rcc", "gastric", "hcc", "escc",
                                       "sclc", "urothelial", "other"}
    assert set(back["strategy"]) <= {"monotherapy", "chemo", "antiangiogenic", "radiotherapy",
                                    "dual_ici", "triple"}
    assert set(back["regimen_class"]) <= {"pd1_pdl1", "ctla4_containing"}
    assert set(back["prior_irae_grade"]) <= {"0", "1", "2", "3", "4"}
    assert set(back["prior_irae_organ"]) <= {"none", "colitis", "pneumonitis", "hepatitis",
                                            "myocarditis", "endocrine", "dermatologic", "renal", "other"}
    assert set(back["irae_recurrence"]) <= {"none", "grade1_2", "grade3plus", ""}
    assert set(back["pfs2_event"]) == {"0", "1"}
    assert set(back["liver_mets"]) <= {"0", "1", ""}
    assert set(back["ecog"]) <= {"0", "1", "2", "3", "4", ""}
    assert (back["centre"] != "").all()
    assert ((back["prior_irae_organ"] == "none") == (back["prior_irae_grade"] == "0")).all()
    # the dual_ici strategy is always CTLA-4 containing; discontinuation for an irAE means grade >= 1
    assert (back.loc[back["strategy"] == "dual_ici", "regimen_class"] == "ctla4_containing").all()
    assert (back.loc[back["discontinuation_reason"] == "irae", "prior_irae_grade"] != "0").all()
    # fixed decimals, never 0 months
    for col in ("pfs2_months", "pfs1_months", "tfi_months"):
        assert back[col].str.fullmatch(r"\d+\.\d{3}").all()
        assert (back[col].astype(float) >= 0.001).all()
    observed_nlr = back.loc[back["nlr"] != "", "nlr"]
    assert observed_nlr.str.fullmatch(r"\d+\.\d{2}").all()
    # no centres: the column is empty
    no_centres = pd.read_csv(io.StringIO(to_csv_text(simulate_cohort(50, seed=1).data)), dtype=str,
                             keep_default_na=False)
    assert (no_centres["centre"] == "").all()
    assert no_centres["patient_id"].iloc[0] == "P01"


def test_extra_columns_formats():
    data = simulate_cohort(400, seed=2, extra={"sex": "binary", "age": "continuous"},
                           missing={"age": 0.25}).data
    back = pd.read_csv(io.StringIO(to_csv_text(data)), dtype=str, keep_default_na=False)
    assert set(back["sex"]) <= {"0", "1"}
    age = back["age"]
    assert age.loc[age != ""].str.fullmatch(r"\d+\.\d").all()
    assert abs((age == "").mean() - 0.25) < 0.07
    assert abs(age.loc[age != ""].astype(float).mean() - 65) < 2.0


# --------------------------------------------------------------------------- PFS2


def test_weibull_baseline_median_and_survival():
    truth = null_truth()
    k, m_ref = truth.shape, math.exp(truth.log_median_ref)
    data = simulate_cohort(20000, seed=101, truth=truth, censoring=NO_CENSORING).data
    assert data["pfs2_event"].all()
    t = data["pfs2_months"].to_numpy()
    assert abs(np.median(t) / m_ref - 1) < 0.03
    assert abs(np.mean(t > 2 * m_ref) - math.exp(-math.log(2) * 2 ** k)) < 0.01


def test_cure_fraction():
    truth = null_truth(cure_fraction=0.3)
    data = simulate_cohort(20000, seed=102, truth=truth, censoring=NO_CENSORING).data
    assert abs(1 - data["pfs2_event"].mean() - 0.3) < 0.015


def test_censoring_follows_the_design():
    # T effectively infinite: every time is a censoring time, U(12, 36) without drop-out
    cured = null_truth(cure_fraction=0.999999)
    data = simulate_cohort(5000, seed=103, truth=cured, censoring=Censoring(dropout_rate=0.0)).data
    t = data.loc[data["pfs2_event"] == 0, "pfs2_months"].to_numpy()
    assert t.min() >= 12.0 and t.max() <= 36.0 and abs(t.mean() - 24.0) < 0.5
    dropout = simulate_cohort(5000, seed=104, truth=cured,
                              censoring=Censoring(follow_up_months=1e7, dropout_rate=0.05)).data
    assert abs(dropout["pfs2_months"].mean() - 20.0) < 1.0    # mean of Exp(0.05)


def test_log_hazard_ratio_recovered_by_cox_regression():
    lifelines = pytest.importorskip("lifelines")
    beta = {**null_truth().beta, "tfi_le6": math.log(2.0)}
    data = simulate_cohort(4000, seed=104, truth=null_truth(beta=beta)).data
    frame = pd.DataFrame({"T": data["pfs2_months"], "E": data["pfs2_event"],
                          "tfi_le6": (data["tfi_months"] <= 6).astype(float)})
    cph = lifelines.CoxPHFitter().fit(frame, "T", "E")
    assert abs(cph.params_["tfi_le6"] - math.log(2.0)) < 0.1


def test_age_enters_per_ten_years_centred_at_65():
    lifelines = pytest.importorskip("lifelines")
    beta = {**null_truth().beta, "age": math.log(1.5)}
    data = simulate_cohort(4000, seed=105, truth=null_truth(beta=beta),
                           extra={"age": "continuous"}).data
    frame = pd.DataFrame({"T": data["pfs2_months"], "E": data["pfs2_event"],
                          "age10": (data["age"] - 65.0) / 10.0})
    cph = lifelines.CoxPHFitter().fit(frame, "T", "E")
    assert abs(cph.params_["age10"] - math.log(1.5)) < 0.1
    # centring: a 65-year-old is the reference patient (median = m_ref)
    spec = CovariateSpec(extra_continuous_mean=65.0, extra_continuous_sd=0.0)
    at65 = simulate_cohort(8000, seed=106, truth=null_truth(beta=beta), covariates=spec,
                           censoring=NO_CENSORING, extra={"age": "continuous"}).data
    assert abs(at65["pfs2_months"].median() / 8.0 - 1) < 0.05


# --------------------------------------------------------------------------- irAE


def _reference_pattern_spec(**changes) -> CovariateSpec:
    """Every patient has z = 0 (pd1_pdl1, prior grade <= 2, clinical decision, TFI > 6)."""
    base = dict(reason_probs={"clinical_decision": 1.0},
                strategy_probs={"monotherapy": 1.0}, ctla4_other_prob=0.0,
                irae_grade_probs_otherwise=(0.5, 0.3, 0.2, 0.0, 0.0),
                tfi_median_months=24.0, tfi_sdlog=0.0)
    base.update(changes)
    return CovariateSpec(**base)


def test_irae_ordinal_probabilities_for_fixed_patterns():
    truth = replace(default_truth(), sigma_tumour_irae=0.0, sigma_organ=0.0)
    data = simulate_cohort(20000, seed=201, truth=truth, covariates=_reference_pattern_spec(),
                           irae_assessed_fraction=1.0).data
    derived = derive_covariates(data)
    assert (derived[["regimen_ctla4", "prior_irae_grade3plus", "reason_progression",
                     "reason_irae", "tfi_le6"]] == 0).all().all()
    y = data["irae_recurrence"]
    assert y.notna().all()
    assert abs((y != "none").mean() - expit(truth.a_any)) < 0.015
    assert abs((y == "grade3plus").mean() - expit(truth.a_3)) < 0.015
    # all CTLA-4 containing: the odds ratio shifts both stages of the sequential logit
    b = logit(expit(truth.a_3) / expit(truth.a_any))
    ctla4 = simulate_cohort(20000, seed=202, truth=truth, irae_assessed_fraction=1.0,
                            covariates=_reference_pattern_spec(ctla4_other_prob=1.0)).data
    g = truth.gamma["regimen_ctla4"]
    y = ctla4["irae_recurrence"]
    assert abs((y != "none").mean() - expit(truth.a_any + g)) < 0.015
    assert abs((y == "grade3plus").mean() - expit(truth.a_any + g) * expit(b + g)) < 0.015


def test_irae_assessed_fraction():
    data = simulate_cohort(5000, seed=203).data
    assert abs(data["irae_recurrence"].isna().mean() - 0.1) < 0.02


# --------------------------------------------------------------------------- missingness


def test_mcar_missing_fraction():
    data = simulate_cohort(5000, seed=301, missing={"nlr": 0.2, "ecog": 0.2}).data
    for col in ("nlr", "ecog"):
        assert abs(data[col].isna().mean() - 0.2) < 0.02
    for col in ("pfs1_months", "tfi_months", "liver_mets", "pfs2_months", "tumour_type"):
        assert data[col].notna().all()


def test_mar_missing_fraction_and_dependence_on_reason():
    data = simulate_cohort(5000, seed=302, missing={"nlr": 0.2}, missing_mechanism="mar").data
    miss = data["nlr"].isna()
    assert abs(miss.mean() - 0.2) < 0.02
    progression = data["discontinuation_reason"] == "progression"
    assert miss[progression].mean() > miss[~progression].mean() + 0.05
    mcar = simulate_cohort(5000, seed=302, missing={"nlr": 0.2}).data["nlr"].isna()
    assert abs(mcar[progression].mean() - mcar[~progression].mean()) < 0.03


# --------------------------------------------------------------------------- derived covariates


def test_derived_covariates_at_the_boundaries():
    rows = [
        dict(ecog=1, pfs1_months=5.999, tfi_months=6.0, liver_mets=0, nlr=3.79,
             discontinuation_reason="progression", regimen_class="pd1_pdl1", prior_irae_grade=2),
        dict(ecog=2, pfs1_months=6.0, tfi_months=6.001, liver_mets=1, nlr=3.8,
             discontinuation_reason="irae", regimen_class="ctla4_containing", prior_irae_grade=3),
        dict(ecog=4, pfs1_months=0.001, tfi_months=0.001, liver_mets=1, nlr=3.81,
             discontinuation_reason="clinical_decision", regimen_class="pd1_pdl1", prior_irae_grade=0),
        dict(ecog=None, pfs1_months=float("nan"), tfi_months=float("nan"), liver_mets=None,
             nlr=float("nan"), discontinuation_reason="irae", regimen_class="pd1_pdl1",
             prior_irae_grade=4),
    ]
    frame = pd.DataFrame(rows)
    frame["ecog"] = frame["ecog"].astype("Int64")
    frame["liver_mets"] = frame["liver_mets"].astype("Int64")
    got = derive_covariates(frame)
    for i, row in enumerate(rows):
        expected = reference_derivation(row)
        for name, value in expected.items():
            if math.isnan(value):
                assert math.isnan(got.loc[i, name]), (i, name)
            else:
                assert got.loc[i, name] == value, (i, name)


@pytest.mark.parametrize("covariate, below, above", [
    # (covariate, spec giving derived value 0, spec giving derived value 1)
    ("ecog_ge2", dict(ecog_probs=(0, 1, 0, 0, 0)), dict(ecog_probs=(0, 0, 1, 0, 0))),
    ("pfs1_lt6", dict(pfs1_median_months=6.0, pfs1_sdlog=0.0), dict(pfs1_median_months=5.999, pfs1_sdlog=0.0)),
    ("tfi_le6", dict(tfi_median_months=6.001, tfi_sdlog=0.0), dict(tfi_median_months=6.0, tfi_sdlog=0.0)),
    ("nlr", dict(nlr_median=3.79, nlr_sdlog=0.0), dict(nlr_median=3.8, nlr_sdlog=0.0)),
])
def test_boundary_values_drive_the_hazard(covariate, below, above):
    """End to end: at the cut-points the simulator applies the hazard ratio by the rules."""
    hr = 4.0
    truth = null_truth(beta={**null_truth().beta, covariate: math.log(hr)})
    k, m_ref = truth.shape, 8.0
    medians = {}
    for label, spec in (("below", below), ("above", above)):
        data = simulate_cohort(4000, seed=401, truth=truth, covariates=CovariateSpec(**spec),
                               censoring=NO_CENSORING).data
        medians[label] = data["pfs2_months"].median()
    assert abs(medians["below"] / m_ref - 1) < 0.06
    assert abs(medians["above"] / (m_ref * hr ** (-1 / k)) - 1) < 0.06


# --------------------------------------------------------------------------- truth and errors


def test_truth_round_trips_through_dict_and_yaml():
    truth = simulate_cohort(100, seed=1, n_centres=3).truth
    assert Truth.from_dict(truth.to_dict()) == truth
    assert Truth.from_dict(yaml.safe_load(truth.to_yaml())) == truth
    assert set(truth.tumour_effects) == set(sim.TUMOUR_TYPES)
    assert set(truth.organ_effects) == set(sim.IRAE_ORGANS)
    assert set(truth.centre_effects) == {"C1", "C2", "C3"}
    assert simulate_cohort(10, seed=1).truth.centre_effects == {}
    d = default_truth()
    assert math.isclose(math.exp(d.log_median_ref), 8.0)
    assert math.isclose(expit(d.a_any), 0.30) and math.isclose(expit(d.a_3), 0.08)
    assert math.isclose(math.exp(d.beta["ecog_ge2"]), 2.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "positive integer"),
    (dict(missing={"tumour_type": 0.1}), "cannot be missing"),
    (dict(missing={"nlr": 1.0}), "fraction"),
    (dict(missing_mechanism="mnar"), "missing_mechanism"),
    (dict(extra={"ecog": "binary"}), "clashes"),
    (dict(extra={"sex": "categorical"}), "kind"),
    (dict(irae_assessed_fraction=1.5), "irae_assessed_fraction"),
    (dict(truth=replace(default_truth(), beta={**default_truth().beta, "sexx": 0.1})), "sexx"),
])
def test_invalid_arguments(kwargs, match):
    kwargs = {"n": 10, **kwargs}
    n = kwargs.pop("n")
    with pytest.raises(SimulationError, match=match):
        simulate_cohort(n, **kwargs)


def test_invalid_specifications():
    with pytest.raises(SimulationError, match="a_3"):
        replace(default_truth(), a_3=0.0, a_any=-1.0)
    with pytest.raises(SimulationError, match="sum to 1"):
        CovariateSpec(reason_probs={"progression": 0.5, "irae": 0.3})
    with pytest.raises(SimulationError, match="unknown levels"):
        CovariateSpec(tumour_probs={"lung": 1.0})
    with pytest.raises(SimulationError, match="follow_up"):
        Censoring(follow_up_months=0.0)


def test_exact_times_are_the_unrounded_draws():
    """exact_times=True changes nothing but the rounding of pfs2_months."""
    rounded = simulate_cohort(400, seed=11).data
    exact = simulate_cohort(400, seed=11, exact_times=True).data
    pd.testing.assert_frame_equal(rounded.drop(columns="pfs2_months"), exact.drop(columns="pfs2_months"))
    t = exact["pfs2_months"].to_numpy()
    assert (t > 0).all() and not np.array_equal(np.round(t, 3), t)
    np.testing.assert_array_equal(np.maximum(np.round(t, 3), 0.001), rounded["pfs2_months"].to_numpy())
