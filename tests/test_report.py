"""Patient reports: numbers equal predict/summarise, identical across renderers, checklist,
not-reached medians, reliability, local share, self-contained HTML, PDF."""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from rechallenge.errors import CohortError, RechallengeError
from rechallenge.literature_model import PosteriorModel, literature_model
from rechallenge.predict import predict, summarise
from rechallenge.report import (CURVE_QUANTILES, QUANTITIES, REFERENCE, build_reports, to_html,
                                write_pdf)

PATIENT = dict(patient_id="A", ecog=1, pfs1_months=8.0, tfi_months=7.0, liver_mets=0, nlr=2.9,
               discontinuation_reason="irae", tumour_type="nsclc", regimen_class="pd1_pdl1",
               prior_irae_grade=2, prior_irae_organ="colitis")
PROBS = ("pfs2_6mo", "pfs2_12mo", "irae_any", "irae_grade3plus")


@pytest.fixture(scope="module")
def lit():
    return literature_model()


@pytest.fixture(scope="module")
def report(lit):
    return build_reports(lit, PATIENT, seed=3)[0]


@pytest.fixture(scope="module")
def quick_fit(tmp_path_factory):
    """A real (short, probably unreliable) fit of the demo cohort, saved and re-read as
    the command line reads it."""
    pytest.importorskip("pymc")
    from rechallenge.fit import fit
    from rechallenge.fitio import load_posterior, save
    from rechallenge.simulate import demo_cohort

    with warnings.catch_warnings():  # 200 draws: the convergence gate may warn
        warnings.simplefilter("ignore")
        idata = fit(demo_cohort().data, draws=200, tune=200, chains=2, progressbar=False)
    path = save(idata, tmp_path_factory.mktemp("fit") / "quick.nc")
    return load_posterior(path)


def _per100(p):
    return int(math.floor(100 * p + 0.5))


def _months(x):
    return f"{math.floor(10 * x + 0.5) / 10:.1f}"


def _flat(text):
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def test_json_schema_and_numbers_equal_summarise(lit, report):
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    for key in ("patient_id", *QUANTITIES, "reliable", "warnings", "criteria", "contraindicated",
                "contraindication_reasons", "guidance", "local_share", "source"):
        assert key in d
    assert d["patient_id"] == "A" and d["reliable"] is True and isinstance(d["warnings"], list)
    assert all(set(c) >= {"criterion", "status", "source"} for c in d["criteria"])
    s = summarise(predict(lit, pd.DataFrame([PATIENT]), seed=3))
    for q in QUANTITIES:
        row = s[s.quantity == q].iloc[0]
        assert set(d[q]) >= {"estimate", "lower", "upper"}
        for k in ("estimate", "lower", "upper"):
            expected = None if np.isnan(row[k]) else float(row[k])
            assert d[q][k] == pytest.approx(expected, rel=1e-12, abs=0) if expected is not None else d[q][k] is None
    assert d["pfs2_median_months"]["not_reached_probability"] == pytest.approx(
        s[s.quantity == "pfs2_median_months"].not_reached_probability.iloc[0])
    assert "not_reached_probability" not in d["pfs2_6mo"]


def test_reference_patient_is_the_favourable_version(lit, report):
    ref = dict(PATIENT, **REFERENCE, patient_id="R")
    assert report.reference_inputs["tumour_type"] == "nsclc"
    assert report.reference_inputs["prior_irae_organ"] == "colitis"
    assert report.reference_inputs["ecog"] == 0 and report.reference_inputs["nlr"] == 2.0
    s = summarise(predict(lit, pd.DataFrame([ref]), seed=3))
    est = s[s.quantity == "pfs2_6mo"].estimate.iloc[0]
    assert report.reference_summary["pfs2_6mo"]["estimate"] == pytest.approx(est, rel=1e-12)
    assert report.curve.shape == report.reference_curve.shape == (len(CURVE_QUANTILES), report.times.size)
    assert np.all(np.diff(report.curve, axis=0) >= -1e-12)  # quantiles ordered
    pred = predict(lit, pd.DataFrame([PATIENT]), seed=3)
    expected = np.quantile(pred["survival"].values.reshape(-1, pred.sizes["time"]), CURVE_QUANTILES, axis=0)
    np.testing.assert_allclose(report.curve, expected, rtol=1e-12, atol=1e-14)


def test_text_html_json_show_identical_rounded_numbers(report):
    d = report.to_dict()
    text, page = _flat(report.to_text()), _flat(to_html([report]))
    p6, p12, ia, i3 = ({k: _per100(d[q][k]) for k in ("estimate", "lower", "upper")} for q in PROBS)
    m, r = d["pfs2_median_months"], d["rmst_12mo"]
    expected = [
        f"about {p6['estimate']} ({p6['lower']}–{p6['upper']}) would be free of progression at 6 months",
        f"about {p12['estimate']} ({p12['lower']}–{p12['upper']}) at 12 months",
        f"about {ia['estimate']} ({ia['lower']}–{ia['upper']}) would have an irAE again, about "
        f"{i3['estimate']} ({i3['lower']}–{i3['upper']}) of grade 3 or higher",
        f"{_months(r['estimate'])} months on average ({_months(r['lower'])}–{_months(r['upper'])})",
        f"Median PFS2: {_months(m['estimate'])} months ({_months(m['lower'])}",
    ]
    for sentence in expected:
        assert sentence in text, sentence
        assert sentence in page, sentence


def test_full_floats_in_json_rounded_in_text(report):
    d = report.to_dict()
    assert d["pfs2_6mo"]["estimate"] != round(d["pfs2_6mo"]["estimate"], 2)
    assert repr(d["pfs2_6mo"]["estimate"]) not in report.to_text()


def test_grade3_myocarditis_is_contraindicated_with_reason_and_source(lit):
    r = build_reports(lit, dict(PATIENT, prior_irae_organ="myocarditis", prior_irae_grade=3))[0]
    d = r.to_dict()
    assert d["contraindicated"] is True
    assert d["contraindication_reasons"] and all("myocarditis" in x for x in d["contraindication_reasons"])
    assert any("Table 1" in x for x in d["contraindication_reasons"])
    item = {c["id"]: c for c in d["criteria"]}["no_high_grade_myocarditis"]
    assert item["status"] == "unfavourable" and "Table 1" in item["source"]
    assert "CONTRAINDICATED" in r.to_text() and "CONTRAINDICATED" in r.to_html()
    assert build_reports(lit, PATIENT)[0].to_dict()["contraindicated"] is False


def test_median_not_reached_is_null_with_probability(lit):
    r = build_reports(lit, PATIENT, times=np.arange(0, 1.01, 0.25))[0]  # horizon 1 month
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    med = d["pfs2_median_months"]
    assert med["estimate"] is None and med["upper"] is None
    assert 0.5 < med["not_reached_probability"] <= 1
    assert d["horizon_months"] == 1.0
    assert f"not reached within 1 months (probability {_per100(med['not_reached_probability'])} in 100" \
        in _flat(r.to_text())


def test_upper_limit_not_reached_is_null(lit):
    from rechallenge.predict import predict

    medians = predict(lit, pd.DataFrame([PATIENT]), times=[1.0])["pfs2_median_months"].values.ravel()
    horizon = float(np.quantile(medians, 0.8))  # about 20% of draws beyond the horizon
    d = build_reports(lit, PATIENT, times=np.linspace(0, horizon, 25))[0].to_dict()["pfs2_median_months"]
    assert d["estimate"] is not None and d["upper"] is None and 0.025 < d["not_reached_probability"] < 0.5


def test_unreliable_model_is_flagged(lit):
    bad = PosteriorModel(lit.posterior, {**lit.attrs, "reliable": 0})
    r = build_reports(bad, PATIENT)[0]
    assert r.to_dict()["reliable"] is False
    assert r.to_text().splitlines()[3].startswith("!! UNRELIABLE")
    assert "UNRELIABLE" in r.to_html()
    assert "UNRELIABLE" not in build_reports(lit, PATIENT)[0].to_text()


def test_local_share_zero_for_literature_model(report):
    d = report.to_dict()
    assert d["local_share"] == {q: 0.0 for q in QUANTITIES}
    assert d["source_kind"] == "literature" and "literature" in d["source"]
    assert "every estimate comes from the literature" in report.to_text()


def test_local_share_in_unit_interval_for_a_fit(quick_fit):
    r = build_reports(quick_fit, [PATIENT, dict(PATIENT, patient_id="B", tumour_type="other", ecog=None)])
    for rep in r:
        d = rep.to_dict()
        assert d["source_kind"] == "fit" and "300 patients" in d["source"]
        assert set(d["local_share"]) == set(QUANTITIES)
        assert all(0 < v <= 1 for v in d["local_share"].values()), d["local_share"]
    assert any("ecog" in w.lower() for w in r[1].warnings) and any("not in the fit" in w for w in r[1].warnings)
    assert "Share of each estimate's certainty that comes from the local data" in _flat(r[0].to_text())


def test_missing_covariate_averaged_with_warning(lit):
    r = build_reports(lit, dict(PATIENT, ecog=None, nlr=float("nan")))[0]
    assert r.inputs["ecog"] is None and r.inputs["nlr"] is None
    assert any("ecog" in w.lower() for w in r.warnings) and any("nlr" in w.lower() for w in r.warnings)
    assert all(w in _flat(r.to_text()) and w in _flat(r.to_html()) for w in r.warnings)
    assert {c.id: c.status for c in r.assessment.criteria}["ecog"] == "unknown"


def test_checklist_only_fields_and_errors(lit, tmp_path):
    r = build_reports(lit, dict(PATIENT, irae_resolved_grade=1, steroids_tapered="yes"))[0]
    assert r.inputs["steroids_tapered"] is True
    assert {c.id: c.status for c in r.assessment.criteria}["irae_resolved"] == "favourable"
    with pytest.raises(CohortError, match="irae_resolved_grade"):
        build_reports(lit, dict(PATIENT, irae_resolved_grade=4))
    csv = tmp_path / "p.csv"
    pd.DataFrame([dict(PATIENT, irae_resolved_grade=0, steroids_tapered="no"),
                  dict(PATIENT, patient_id="B", ecog="", irae_resolved_grade="", steroids_tapered="")]
                 ).to_csv(csv, index=False)
    rs = build_reports(lit, csv)
    assert [x.patient_id for x in rs] == ["A", "B"] and rs[1].inputs["ecog"] is None
    with pytest.raises(CohortError, match=r"row 1.*'ecog'"):
        build_reports(lit, dict(PATIENT, ecog=7))


def test_many_patients_in_chunks_equal_one_by_one(lit):
    rows = [dict(PATIENT, patient_id=f"p{i}", nlr=1.0 + i, tumour_type=["nsclc", "melanoma"][i % 2])
            for i in range(18)]
    many = build_reports(lit, pd.DataFrame(rows), seed=1)
    assert [r.patient_id for r in many] == [f"p{i}" for i in range(18)]
    one = build_reports(lit, rows[17], seed=1)[0]
    assert many[17].to_dict() == one.to_dict()


def test_bad_ci(lit):
    with pytest.raises(RechallengeError, match="ci"):
        build_reports(lit, PATIENT, ci=1.5)


def test_html_is_self_contained(report):
    page = to_html([report, report])
    assert page.startswith("<!DOCTYPE html>") and page.count('src="data:image/png;base64,') == 4
    stripped = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert "http" not in stripped.lower()
    for bad in ('src="/', "<script", "<link", "url(", "@import"):
        assert bad not in page.lower()


def test_html_escapes_user_text(lit):
    r = build_reports(lit, dict(PATIENT, patient_id="<b>x</b>"))[0]
    assert "<b>x</b>" not in r.to_html() and "&lt;b&gt;x&lt;/b&gt;" in r.to_html()


def test_pdf_written_atomically(report, tmp_path):
    out = tmp_path / "r.pdf"
    out.write_bytes(b"old")
    write_pdf([report, report], out)
    assert out.read_bytes().startswith(b"%PDF")
    assert [p.name for p in tmp_path.iterdir()] == ["r.pdf"]


def test_figures_take_an_axes(report):
    from matplotlib.figure import Figure

    from rechallenge.report_figures import plot_irae_icons, plot_pfs2_curve

    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert plot_pfs2_curve(report, ax=ax1) is ax1 and plot_irae_icons(report, ax=ax2) is ax2
    n = {q: _per100(report.summary[q]["estimate"]) for q in ("irae_any", "irae_grade3plus")}
    labels = [t.get_text() for t in ax2.get_legend().get_texts()]
    assert labels[0] == f"grade ≥ 3 irAE: {n['irae_grade3plus']}"
    assert labels[2] == f"no irAE: {100 - n['irae_any']}"
    assert plot_pfs2_curve(report).figure is not fig


def test_report_numbers_equal_predict_summarise_and_local_share_exactly(lit):
    """build_reports computes the numbers itself (distinct patterns, order statistics of
    the curves, the prior predictive reusing the prepared patients): they must be those of
    predict / summarise / np.quantile / the prior's predict, to the last bit — here for a
    fit-like model (local share computed), with a missing NLR and an unseen tumour type."""
    from rechallenge.report import _prior_model, _transformed

    tumours = [t for t in json.loads(lit.attrs["levels"])["tumour_type"] if t != "rcc"]
    levels = {**json.loads(lit.attrs["levels"]), "tumour_type": tumours}
    fit = PosteriorModel(lit.posterior.isel(draw=slice(0, 1000)).sel(tumour_type=tumours),
                         {**{k: v for k, v in lit.attrs.items() if k != "source"}, "levels": json.dumps(levels),
                          "n_patients": 50, "n_events": 40, "reliable": 1})
    patients = [PATIENT, dict(PATIENT, patient_id="B", nlr=None), dict(PATIENT, patient_id="C", tumour_type="rcc"),
                dict(PATIENT, patient_id="D", ecog=3, tfi_months=2.0, discontinuation_reason="progression")]
    times = np.arange(0.0, 24.01, 1.0)
    reports = build_reports(fit, patients, seed=4, times=times, ci=0.9)
    assert any("not in the fit" in w for w in reports[2].warnings) and any("NLR" in w for w in reports[1].warnings)
    table = pd.DataFrame(patients)
    pred = predict(fit, table, times=times, seed=4)
    s = summarise(pred, ci=0.9)
    prior = predict(_prior_model(fit), table, times=[24.0], seed=4)
    survival = pred["survival"].values.reshape(-1, len(patients), times.size)

    def curve_quantiles(draws):  # sorted draws, linear interpolation (np.quantile's, up to rounding)
        x = np.sort(draws, axis=0)
        pos = np.asarray(CURVE_QUANTILES) * (len(x) - 1)
        lo = np.floor(pos).astype(int)
        w = (pos - lo)[:, None]
        out = x[lo] * (1 - w) + x[np.minimum(lo + 1, len(x) - 1)] * w
        np.testing.assert_allclose(out, np.quantile(draws, CURVE_QUANTILES, axis=0), rtol=1e-12, atol=1e-15)
        return out

    for i, r in enumerate(reports):
        assert r.source_kind == "fit"
        np.testing.assert_array_equal(r.curve, curve_quantiles(survival[:, i]))
        for q in QUANTITIES:
            row = s[(s.patient_id == r.patient_id) & (s.quantity == q)].iloc[0]
            for k in ("estimate", "lower", "upper"):
                assert r.summary[q][k] == (None if np.isnan(row[k]) else row[k]), (r.patient_id, q, k)
            post = pred[q].values.reshape(-1, len(patients))[:, i]
            vp = np.var(_transformed(q, prior[q].values.reshape(-1, len(patients))[:, i], 24.0))
            vq = np.var(_transformed(q, post, 24.0))
            assert r.local_share[q] == float(np.clip(1 - vq / vp, 0, 1)), (r.patient_id, q)
        ref = dict(patients[i], **REFERENCE, patient_id="R")
        rs = summarise(predict(fit, pd.DataFrame([ref]), times=times, seed=4), ci=0.9)
        ref_pred = predict(fit, pd.DataFrame([ref]), times=times, seed=4)["survival"].values.reshape(-1, times.size)
        np.testing.assert_array_equal(r.reference_curve, curve_quantiles(ref_pred))
        for q in QUANTITIES:
            row = rs[rs.quantity == q].iloc[0]
            assert r.reference_summary[q]["estimate"] == (None if np.isnan(row.estimate) else row.estimate)
