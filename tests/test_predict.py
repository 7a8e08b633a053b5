"""Per-patient predictions: closed forms, missing values, new groups, literature model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import integrate, stats

from rechallenge import curves
from rechallenge.literature_model import PosteriorModel, build_artefact, literature_model, _read_artefact
from rechallenge.modelspec import load_spec, spec_from_dict
from rechallenge.predict import predict, predict_summary, summarise

PATIENT = dict(patient_id="A", ecog=1, pfs1_months=8.0, tfi_months=7.0, liver_mets=0, nlr=2.9,
               discontinuation_reason="irae", tumour_type="nsclc", regimen_class="pd1_pdl1",
               prior_irae_grade=2, prior_irae_organ="colitis")


def _weibull_model(n_draws=50, seed=0, cure=False, reliable=1):
    """A fake Weibull posterior with random parameters (chain 2 x draws)."""
    spec = load_spec().to_dict()
    spec["pfs2"]["cure_fraction"] = cure
    spec = spec_from_dict(spec)
    rng = np.random.default_rng(seed)
    shape = (2, n_draws)
    names = list(spec.pfs2_covariates)
    tumours, organs = ["melanoma", "nsclc"], ["colitis", "none"]
    post = {
        "log_hr": (("chain", "draw", "pfs2_covariate"), rng.normal(0.3, 0.3, shape + (len(names),))),
        "log_median": (("chain", "draw"), rng.normal(np.log(6), 0.2, shape)),
        "log_shape": (("chain", "draw"), rng.normal(0.0, 0.2, shape)),
        "sigma_tumour": (("chain", "draw"), np.abs(rng.normal(0, 0.3, shape))),
        "tumour_effect": (("chain", "draw", "tumour_type"), rng.normal(0, 0.3, shape + (2,))),
        "log_or": (("chain", "draw", "irae_covariate"), rng.normal(0.2, 0.3, shape + (5,))),
        "sigma_tumour_irae": (("chain", "draw"), np.abs(rng.normal(0, 0.3, shape))),
        "tumour_effect_irae": (("chain", "draw", "tumour_type"), rng.normal(0, 0.3, shape + (2,))),
        "sigma_organ": (("chain", "draw"), np.abs(rng.normal(0, 0.3, shape))),
        "organ_effect": (("chain", "draw", "prior_irae_organ"), rng.normal(0, 0.3, shape + (2,))),
        "irae_a_any": (("chain", "draw"), rng.normal(-1.0, 0.3, shape)),
        "irae_b_severe": (("chain", "draw"), rng.normal(-1.0, 0.3, shape)),
    }
    if cure:
        post["logit_cure"] = (("chain", "draw"), rng.normal(-1.5, 0.3, shape))
    ds = xr.Dataset(post, coords={"pfs2_covariate": names, "irae_covariate": list(spec.irae_covariates),
                                  "tumour_type": tumours, "prior_irae_organ": organs})
    attrs = {"model_spec": json.dumps(spec.to_dict()), "reliable": reliable,
             "levels": json.dumps({"tumour_type": tumours, "centre": ["all"], "prior_irae_organ": organs}),
             "standardisation": "{}", "covariate_ranges": json.dumps({"nlr": [0.5, 12.0], "tfi_months": [0, 40]}),
             "covariate_prevalence": json.dumps({"nlr": 0.4, "ecog_ge2": 0.2})}
    return PosteriorModel(ds, attrs), spec


def _eta(model, spec, x, tumour):
    beta = model.posterior["log_hr"].values
    return beta @ x + model.posterior["tumour_effect"].sel(tumour_type=tumour).values


def _x(patient):
    return np.array([patient["ecog"] >= 2, patient["pfs1_months"] < 6, patient["tfi_months"] <= 6,
                     patient["liver_mets"] == 1, patient["nlr"] >= 3.8,
                     patient["discontinuation_reason"] == "progression",
                     patient["discontinuation_reason"] == "irae"], dtype=float)


@pytest.mark.parametrize("cure", [False, True])
def test_weibull_survival_matches_scipy_draw_by_draw(cure):
    model, spec = _weibull_model(cure=cure)
    times = np.array([0.5, 3.0, 6.0, 12.0, 24.0])
    pred = predict(model, pd.DataFrame([PATIENT]), times=times)
    post = model.posterior
    eta = _eta(model, spec, _x(PATIENT), "nsclc")
    k = np.exp(post["log_shape"].values)
    lam0 = np.exp(post["log_median"].values) * np.log(2) ** (-1 / k)
    # PH Weibull: S(t | eta) is a Weibull with scale lam0 * exp(-eta / k)
    s_u = stats.weibull_min.sf(times[None, None, :], c=k[..., None], scale=(lam0 * np.exp(-eta / k))[..., None])
    pi = 1 / (1 + np.exp(-post["logit_cure"].values))[..., None] if cure else 0.0
    expected = pi + (1 - pi) * s_u
    got = pred["survival"].sel(patient="A").transpose("chain", "draw", "time").values
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    np.testing.assert_allclose(pred["pfs2_6mo"].sel(patient="A").values, expected[..., 2], rtol=1e-10)
    # median: S(median) = 0.5 exactly
    med = pred["pfs2_median_months"].sel(patient="A").values
    s_med = pi + (1 - pi) * stats.weibull_min.sf(med, c=k, scale=lam0 * np.exp(-eta / k)) if not cure else \
        pi[..., 0] + (1 - pi[..., 0]) * stats.weibull_min.sf(med, c=k, scale=lam0 * np.exp(-eta / k))
    np.testing.assert_allclose(s_med, 0.5, atol=1e-9)
    # restricted mean to 12 months by quadrature, a few draws
    for c, d in [(0, 0), (1, 7), (0, 31)]:
        sf = lambda t: (pi[c, d, 0] if cure else 0) + (1 - (pi[c, d, 0] if cure else 0)) * stats.weibull_min.sf(  # noqa: E731
            t, c=k[c, d], scale=lam0[c, d] * np.exp(-eta[c, d] / k[c, d]))
        assert pred["rmst_12mo"].sel(patient="A").values[c, d] == pytest.approx(integrate.quad(sf, 0, 12)[0], rel=1e-7)


def test_piecewise_curve_quantities_agree_with_numerics():
    b = curves.Baseline("piecewise", log_hazards=np.log([[[0.2, 0.1, 0.05, 0.03]]]),
                        edges=np.array([0, 3, 6, 12, np.inf]), logit_cure=np.array([[-1.0]]))
    eta = np.array([[0.4]])
    pi = 1 / (1 + np.e)

    def sf(t):
        return float(curves.survival(b, eta, np.array([t]))[0, 0, 0])
    med = float(curves.quantile_time(b, eta)[0, 0])
    assert sf(med) == pytest.approx(0.5, abs=1e-12)
    assert float(curves.restricted_mean(b, eta, 12.0)[0, 0]) == pytest.approx(integrate.quad(sf, 0, 12, points=[3, 6])[0], rel=1e-9)
    # hazard e^0.4 * 0.2 on [0, 3): closed form at t = 2
    assert sf(2.0) == pytest.approx(pi + (1 - pi) * np.exp(-2 * 0.2 * np.exp(0.4)), rel=1e-12)


def test_missing_nlr_is_averaged_and_widens():
    model, spec = _weibull_model(n_draws=400)
    missing = dict(PATIENT, patient_id="B", nlr=None)
    low, high = dict(PATIENT, patient_id="lo", nlr=2.0), dict(PATIENT, patient_id="hi", nlr=5.0)
    pred = predict(model, pd.DataFrame([PATIENT, missing, low, high]), times=[6.0, 12.0])
    # each draw takes NLR high (prevalence 0.4) or low: its values are those of "hi" or "lo"
    for q in ("pfs2_median_months", "irae_any", "pfs2_6mo"):
        b, lo, hi = (pred[q].sel(patient=p).values.ravel() for p in ("B", "lo", "hi"))
        is_hi, is_lo = np.isclose(b, hi, rtol=1e-12), np.isclose(b, lo, rtol=1e-12)
        assert (is_hi | is_lo).all(), q
    assert not (is_hi & is_lo).any()  # NLR matters for PFS2 in every draw
    assert stats.binomtest(int(is_hi.sum()), is_hi.size, 0.4).pvalue > 1e-3
    assert "NLR (neutrophil-to-lymphocyte ratio) is missing" in str(pred["warnings"].sel(patient="B").values)
    # widening: law of total variance, var(B) = E[var | NLR] + var(E[· | NLR]) > E[var | NLR]
    for q in ("pfs2_6mo", "rmst_12mo"):
        var = {p: float(pred[q].sel(patient=p).var()) for p in ("B", "lo", "hi")}
        assert var["B"] > 0.6 * var["lo"] + 0.4 * var["hi"], q


def test_unseen_tumour_type_is_a_new_group_and_widens():
    model, _ = _weibull_model(n_draws=500)
    unseen = dict(PATIENT, patient_id="new", tumour_type="rcc")
    pred = predict(model, pd.DataFrame([PATIENT, unseen]), seed=3)
    assert "not in the fit" in str(pred["warnings"].sel(patient="new").values)
    sd = pred["pfs2_12mo"].std(("chain", "draw"))
    assert float(sd.sel(patient="new")) > float(sd.sel(patient="A"))
    again = predict(model, pd.DataFrame([unseen]), seed=3)  # same level, same draws alone
    np.testing.assert_array_equal(again["pfs2_12mo"].sel(patient="new"), pred["pfs2_12mo"].sel(patient="new"))


def test_out_of_range_and_unreliable_are_carried():
    model, _ = _weibull_model(reliable=0)
    pred = predict(model, pd.DataFrame([dict(PATIENT, nlr=30.0)]))
    table = summarise(pred)
    assert not table["reliable"].any()
    assert "outside the fitted cohort's range" in table["warnings"].iloc[0]


def test_summary_hdi_eti_and_chunked_summary_agree():
    model, _ = _weibull_model(n_draws=300)
    rng = np.random.default_rng(1)
    patients = pd.DataFrame([dict(PATIENT, patient_id=f"p{i}", nlr=float(rng.choice([2.0, 5.0])),
                                  ecog=int(rng.integers(0, 3))) for i in range(25)])
    full = summarise(predict(model, patients, times=[36.0]))
    chunked = predict_summary(model, patients, chunk_size=7, horizon=36.0)
    cols = ["estimate", "lower", "upper"]
    np.testing.assert_allclose(chunked[cols].to_numpy(float), full[cols].to_numpy(float), equal_nan=True)
    hdi = summarise(predict(model, patients), kind="hdi")
    eti = summarise(predict(model, patients), kind="eti")
    finite = np.isfinite(eti["upper"] - eti["lower"]) & np.isfinite(hdi["upper"] - hdi["lower"])
    assert ((hdi["upper"] - hdi["lower"])[finite] <= (eti["upper"] - eti["lower"])[finite] + 1e-12).all()


def test_literature_model_predicts_without_local_data():
    model = literature_model()
    table = summarise(predict(model, pd.DataFrame([PATIENT])))
    assert table["reliable"].all()
    six = table[table.quantity == "pfs2_6mo"].iloc[0]
    assert 0 <= six["lower"] < six["estimate"] < six["upper"] <= 1
    ir = table[table.quantity == "irae_any"].iloc[0]
    assert 0 < ir["lower"] < ir["estimate"] < ir["upper"] < 1


def test_bundled_literature_artefact_is_current():
    """models/literature_model.json must equal a fresh build from the evidence table."""
    assert _read_artefact() == json.loads(json.dumps(build_artefact()))


def _mixed_patients():
    """Patients that exercise every path: repeated predictors, a missing NLR (twice with the
    same PFS2 predictors: its draws still differ, they are seeded by every covariate), an
    unseen tumour type and organ, a missing ECOG with an unseen tumour."""
    return pd.DataFrame([
        PATIENT, dict(PATIENT, patient_id="B", nlr=None), dict(PATIENT, patient_id="C", tumour_type="rcc"),
        dict(PATIENT, patient_id="D", ecog=None, tumour_type="rcc"), dict(PATIENT, patient_id="E"),
        dict(PATIENT, patient_id="F", prior_irae_organ="hepatitis", prior_irae_grade=3),
        dict(PATIENT, patient_id="G", nlr=None, discontinuation_reason="progression"),
        dict(PATIENT, patient_id="H", tumour_type="melanoma", ecog=2, liver_mets=1),
        dict(PATIENT, patient_id="I", nlr=None, regimen_class="ctla4_containing")])  # B's PFS2 predictors


@pytest.mark.parametrize("cure", [False, True])
@pytest.mark.parametrize("kind", ["eti", "hdi"])
def test_fast_summary_equals_summarise_of_predict_exactly(cure, kind):
    """predict_summary (distinct patterns per outcome, blocks, order statistics) gives the
    very numbers of summarise(predict(...)) — and of each patient predicted alone."""
    model, _ = _weibull_model(n_draws=300, cure=cure)
    patients = _mixed_patients()
    full = summarise(predict(model, patients, times=[36.0], seed=5), kind=kind)
    for chunk_size in (1, 3, 2000):
        fast = predict_summary(model, patients, chunk_size=chunk_size, seed=5, kind=kind)
        pd.testing.assert_frame_equal(fast, full, check_exact=True)
    cols = ["estimate", "lower", "upper", "not_reached_probability"]
    for _, row in patients.iterrows():
        alone = summarise(predict(model, pd.DataFrame([row]), times=[36.0], seed=5), kind=kind)
        np.testing.assert_array_equal(alone[cols].to_numpy(float),
                                      full[full.patient_id == row.patient_id][cols].to_numpy(float))


def test_order_statistics_and_median_eti_equal_numpy_exactly():
    """The selection behind the report's curves and the summaries equals sorting."""
    from rechallenge.order_statistics import median_eti as _median_eti, order_statistics as _order_statistics

    rng = np.random.default_rng(2)
    n = 1000
    rows = {"uniform": rng.random((5, n)), "heavy tails": rng.lognormal(0, 4, (5, n)),
            "ties": rng.integers(0, 4, (5, n)).astype(float), "survival far out": rng.random((5, n)) ** 40,
            "constant": np.full((5, n), 0.25), "negative": rng.normal(size=(5, n)),
            "zeros": np.where(rng.random((5, n)) < 0.4, 0.0, rng.random((5, n)))}
    odd = rng.random((5, n))
    odd[0, 3], odd[1, 4], odd[2, 5], odd[3, :7] = np.nan, np.inf, -np.inf, -0.0
    rows["nan, inf, -0.0"] = odd
    ranks = np.array([0, 24, 25, 249, 250, 499, 500, 749, 750, 974, 975, n - 1])
    for name, x in rows.items():
        np.testing.assert_array_equal(_order_statistics(x, ranks), np.sort(x, axis=-1)[:, ranks], err_msg=name)
        for ci in (0.95, 0.5):
            est, lo, hi = _median_eti(x, ci)
            np.testing.assert_array_equal(est, np.median(x, axis=-1), err_msg=name)
            np.testing.assert_array_equal(np.stack([lo, hi]), np.quantile(x, [(1 - ci) / 2, (1 + ci) / 2], axis=-1),
                                          err_msg=name)


def test_survival_by_time_equals_survival_exactly():
    rng = np.random.default_rng(3)
    s, times = 500, np.round(np.arange(0.0, 36.01, 0.5), 10)
    eta = rng.normal(0, 0.7, s)
    for cure in (None, rng.normal(-1.5, 0.5, (s, 1))):
        for b in (curves.Baseline("weibull", log_median=rng.normal(1.8, 0.3, (s, 1)),
                                  log_shape=rng.normal(0, 0.3, (s, 1)), logit_cure=cure),
                  curves.Baseline("piecewise", log_hazards=rng.normal(-2, 0.5, (s, 1, 4)),
                                  edges=np.array([0, 3, 6, 12, np.inf]), logit_cure=cure)):
            np.testing.assert_array_equal(curves.survival_by_time(b, eta, times),
                                          curves.survival(b, eta[:, None], times)[:, 0, :].T)
