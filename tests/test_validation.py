"""Validation: the metrics are scikit-survival's / scikit-learn's on the model's own
predictions, the risk score has the right sign, calibration detects what it should,
LOO covers every patient, cross-validation runs."""

from __future__ import annotations

import json
import warnings

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from scipy.special import expit, logit  # noqa: E402

from rechallenge import validation_metrics as vm  # noqa: E402
from rechallenge.cohort import CATEGORIES  # noqa: E402
from rechallenge.errors import RechallengeError  # noqa: E402
from rechallenge.fit import UnreliableFitWarning, fit  # noqa: E402
from rechallenge.literature_model import PosteriorModel  # noqa: E402
from rechallenge.modelspec import load_spec, spec_from_dict  # noqa: E402
from rechallenge.predict import predict  # noqa: E402
from rechallenge.simulate import simulate_cohort  # noqa: E402
from rechallenge.validation import cross_validate, validate  # noqa: E402

DAYS_PER_MONTH = 365.25 / 12
NCCTG_SPEC = {"name": "ncctg", "pfs2": {"baseline": "weibull", "covariates": ["ecog_ge2"],
                                        "extra": {"female": "binary"}, "groups": []}, "irae": None}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ncctg() -> pd.DataFrame:
    """NCCTG advanced lung cancer data (Loprinzi et al. 1994), as shipped by lifelines."""
    from lifelines.datasets import load_lung

    lung = load_lung().dropna(subset=["ph.ecog"]).reset_index(drop=True)
    return pd.DataFrame({
        "patient_id": [f"L{i:03d}" for i in range(len(lung))],
        "pfs2_months": lung["time"] / DAYS_PER_MONTH,
        "pfs2_event": lung["status"].astype(int),
        "ecog": lung["ph.ecog"].astype(int),
        "female": (lung["sex"] == 2).astype(int),
    })


@pytest.fixture(scope="module")
def ncctg_fit(ncctg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableFitWarning)
        return fit(ncctg, NCCTG_SPEC, "vague", draws=400, tune=400, chains=2, seed=1, progressbar=False)


@pytest.fixture(scope="module")
def ncctg_result(ncctg, ncctg_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableFitWarning)
        return validate(ncctg_fit, ncctg, train_cohort=ncctg, n_draws=100, n_boot=30, seed=1)


def _y(df):
    return vm.surv(df["pfs2_months"].to_numpy(), df["pfs2_event"].to_numpy())


def _constant_posterior(values: dict[str, tuple[tuple[str, ...], object]], coords: dict, spec, n_draws=3,
                        levels=None) -> PosteriorModel:
    """A posterior whose every draw is the given values (one chain)."""
    post = {}
    for name, (dims, value) in values.items():
        v = np.asarray(value, float)
        post[name] = (("chain", "draw") + dims, np.broadcast_to(v, (1, n_draws) + v.shape).copy())
    attrs = {"model_spec": json.dumps(spec.to_dict()), "reliable": 1, "source": "known parameters",
             "levels": json.dumps(levels or {"tumour_type": ["all"], "centre": ["all"],
                                             "prior_irae_organ": ["all"]}),
             "standardisation": "{}", "covariate_ranges": "{}", "covariate_prevalence": "{}"}
    return PosteriorModel(xr.Dataset(post, coords=coords), attrs)


def _truth_model(truth, scale: float = 1.0) -> PosteriorModel:
    """The literature specification at a simulation's true parameters; every log-HR,
    log-OR and group effect multiplied by ``scale`` (2 = over-dispersed predictions)."""
    spec = load_spec()
    tumours, organs = list(CATEGORIES["tumour_type"]), list(CATEGORIES["prior_irae_organ"])
    values = {
        "log_hr": (("pfs2_covariate",), [scale * truth.beta[c] for c in spec.pfs2_covariates]),
        "log_median": ((), truth.log_median_ref), "log_shape": ((), np.log(truth.shape)),
        "sigma_tumour": ((), truth.sigma_tumour),
        "tumour_effect": (("tumour_type",), [scale * truth.tumour_effects[t] for t in tumours]),
        "log_or": (("irae_covariate",), [scale * truth.gamma[c] for c in spec.irae_covariates]),
        "sigma_tumour_irae": ((), truth.sigma_tumour_irae),
        "tumour_effect_irae": (("tumour_type",), [scale * truth.tumour_effects_irae[t] for t in tumours]),
        "sigma_organ": ((), truth.sigma_organ),
        "organ_effect": (("prior_irae_organ",), [scale * truth.organ_effects[o] for o in organs]),
        "irae_a_any": ((), truth.a_any),
        "irae_b_severe": ((), logit(expit(truth.a_3) / expit(truth.a_any))),
    }
    coords = {"pfs2_covariate": list(spec.pfs2_covariates), "irae_covariate": list(spec.irae_covariates),
              "tumour_type": tumours, "prior_irae_organ": organs}
    return _constant_posterior(values, coords, spec, levels={"tumour_type": tumours, "centre": ["all"],
                                                             "prior_irae_organ": organs})


@pytest.fixture(scope="module")
def simulated():
    return simulate_cohort(3000, seed=1)


@pytest.fixture(scope="module")
def truth_result(simulated):
    return validate(_truth_model(simulated.truth), simulated.data, n_draws=3, n_boot=0)


# --------------------------------------------------------------------------- wiring


def test_harrell_c_by_hand_on_a_toy_cohort():
    """Six patients, known log-HRs (ECOG >= 2: +1, female: -0.5), so the linear predictors
    are A 1.0, B 0, C 0.5, D -0.5, E 0, F -0.5. Comparable pairs (earlier time is an
    event): A with all 5 others (5 concordant); B (t=4) with C (discordant: C has the
    higher risk but lived longer), D, F (concordant) and E (tied risk, 1/2); D (t=8) with
    E (discordant) and F (tied). C = (7 + 2 x 1/2) / 11 = 8/11; the wrong sign gives 3/11."""
    spec = spec_from_dict(NCCTG_SPEC)
    model = _constant_posterior({"log_hr": (("pfs2_covariate",), [1.0, -0.5]),
                                 "log_median": ((), np.log(8.0)), "log_shape": ((), 0.0)},
                                {"pfs2_covariate": ["ecog_ge2", "female"]}, spec)
    toy = pd.DataFrame({"patient_id": list("ABCDEF"), "pfs2_months": [2, 4, 5, 8, 14, 20],
                        "pfs2_event": [1, 1, 0, 1, 0, 1], "ecog": [3, 0, 2, 0, 0, 1],
                        "female": [0, 0, 1, 1, 0, 1]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few events for calibration models: NaN
        res = validate(model, toy, n_draws=3, n_boot=0)
    assert float(res.point["harrell_c"]) == pytest.approx(8 / 11, abs=1e-12)
    np.testing.assert_allclose(res.metrics["harrell_c"].values, 8 / 11, atol=1e-12)
    # the risk score decreases with predicted survival
    risk = res.predictions["risk_score"].values
    assert risk[0] > risk[2] > risk[1] == risk[4] > risk[3] == risk[5]
    assert vm.harrell_c(toy["pfs2_months"], toy["pfs2_event"], -risk) == pytest.approx(3 / 11)


def test_cox_and_logistic_solvers_agree_with_reference_implementations():
    from sklearn.linear_model import LogisticRegression
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=n)
    t = np.round(rng.exponential(np.exp(-0.8 * x)), 1) + 0.1  # rounded: tied times
    e = rng.random(n) < 0.7
    basis = vm.rcs_basis(x, np.quantile(x, [0.1, 0.5, 0.9]))
    ours = vm.cox_breslow(t, e, basis)
    ref = CoxPHSurvivalAnalysis(alpha=0, ties="breslow").fit(basis, vm.surv(t, e))
    np.testing.assert_allclose(ours["coef"], ref.coef_, rtol=1e-6)
    s_ref = np.array([f(1.0) for f in ref.predict_survival_function(basis[:20])])
    s_ours = np.exp(-ours["cumhaz"](1.0) * np.exp((basis[:20] - ours["center"]) @ ours["coef"]))
    np.testing.assert_allclose(s_ours, s_ref, rtol=1e-6)
    y = rng.random(n) < expit(-0.5 + 1.3 * x)
    coef = vm.logistic_fit(x, y)
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=1000).fit(x[:, None], y)
    np.testing.assert_allclose(coef, [lr.intercept_[0], lr.coef_[0, 0]], rtol=1e-5)


# --------------------------------------------------------------------------- NCCTG


def test_ncctg_metrics_are_scikit_survival_on_the_same_predictions(ncctg, ncctg_result):
    from sksurv.metrics import (brier_score, concordance_index_censored, concordance_index_ipcw,
                                cumulative_dynamic_auc, integrated_brier_score)

    res, y = ncctg_result, _y(ncctg)
    pred = res.predictions
    event, time = ncctg["pfs2_event"].to_numpy(bool), ncctg["pfs2_months"].to_numpy()
    times = np.array([6.0, 12.0])
    grid = np.array(res.info["ibs_grid"])
    s_mean = pred["survival_mean"].sel(grid_time=times).values
    risk = pred["risk_score"].values
    np.testing.assert_allclose(risk, 1 - s_mean[:, 1], rtol=0, atol=0)
    point = res.point
    assert float(point["harrell_c"]) == pytest.approx(concordance_index_censored(event, time, risk)[0], abs=1e-10)
    assert float(point["uno_c"]) == pytest.approx(concordance_index_ipcw(y, y, risk, tau=12.0)[0], abs=1e-10)
    np.testing.assert_allclose(point["brier"].values, brier_score(y, y, s_mean, times)[1], atol=1e-10)
    np.testing.assert_allclose(point["auc"].values, cumulative_dynamic_auc(y, y, 1 - s_mean, times)[0], atol=1e-10)
    s_grid = pred["survival_mean"].sel(grid_time=grid).values
    assert float(point["ibs"]) == pytest.approx(integrated_brier_score(y, y, s_grid, grid), abs=1e-10)
    for k in (0, 37, 99):  # per draw
        s_k = pred["survival"].isel(draw=k).values
        m = res.metrics.isel(draw=k)
        assert float(m["harrell_c"]) == pytest.approx(
            concordance_index_censored(event, time, 1 - s_k[:, 1])[0], abs=1e-10)
        np.testing.assert_allclose(m["brier"].values, brier_score(y, y, s_k, times)[1], atol=1e-10)
    # NCCTG: modest discrimination, as published for ECOG + sex
    assert 0.58 < float(point["harrell_c"]) < 0.68
    row = res.summary[res.summary["metric"] == "harrell_c"].iloc[0]
    assert row["boot_lower"] < row["value"] == float(point["harrell_c"]) < row["boot_upper"]


def test_ncctg_predictions_are_the_models_own(ncctg, ncctg_fit, ncctg_result):
    """The scored draws are exactly predict()'s for the chosen posterior draws."""
    patients = ncctg.drop(columns=["pfs2_months", "pfs2_event"])
    full = predict(ncctg_fit, patients, times=[6.0, 12.0])
    stacked = full["survival"].transpose("chain", "draw", "patient", "time").values.reshape(-1, len(ncctg), 2)
    chosen = np.array(ncctg_result.info["draw_indices"])
    assert chosen.size == 100 == np.unique(chosen).size
    np.testing.assert_allclose(ncctg_result.predictions["survival"].values, stacked[chosen], rtol=1e-12)


def test_ncctg_calibration_ppc_plots_and_tripod_table(ncctg_result):
    res = ncctg_result
    fig = res.plot_calibration()
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.lines and ax.collections  # curve, groups with error bars, band
        assert any(len(line.get_xdata()) >= 3 for line in ax.lines)
    fig = res.plot_calibration(time=12)
    assert len(fig.axes) == 1
    fig = res.plot_ppc_km()
    assert fig.axes[0].lines
    # in-sample, a Weibull fit follows the Kaplan-Meier curve
    assert res.ppc.attrs["km_ci_covers_median"] > 0.9
    assert res.ppc.attrs["max_abs_difference"] < 0.08
    cal = res.calibration
    assert set(cal["time"]) == {6.0, 12.0} and (cal.groupby("time")["n"].sum() == 227).all()
    table = res.tripod_table()
    values = dict(zip(table["measure"], table["estimate"]))
    assert values["patients"] == "227" and values["PFS2 events"] == "164"
    for measure in ("Harrell's C", "calibration slope (Cox on cll)", "ICI", "integrated Brier score"):
        row = table[table["measure"] == measure].iloc[0]
        assert row["posterior_95"] and row["bootstrap_95"], measure
    with pytest.raises(ValueError, match="time must be one of"):
        res.plot_calibration(time=7)


def test_loo_has_a_pareto_k_for_every_patient(ncctg_fit, ncctg_result):
    pareto = ncctg_result.pareto_k
    assert len(pareto) == 227 and np.isfinite(pareto["pareto_k"]).all()
    ref = az.loo(ncctg_fit, var_name="pfs2", pointwise=True)
    assert ncctg_result.loo["pfs2"].elpd_loo == pytest.approx(ref.elpd_loo, rel=1e-12)
    np.testing.assert_allclose(pareto["pareto_k"], ref.pareto_k.values)
    assert ncctg_result.info["loo"]["pfs2"]["n_k_gt_0.7"] == int((ref.pareto_k.values > 0.7).sum())


def test_cross_validate_ncctg_pools_every_patient_once(ncctg):
    """k = 3 on NCCTG (the compiled model of the module's fit is reused)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableFitWarning)
        res = cross_validate(ncctg, k=3, spec=NCCTG_SPEC, priors="vague", n_draws=50, n_boot=0, seed=2,
                             fit_kwargs={"draws": 300, "tune": 300})
    fold = res.predictions["fold"].values
    assert sorted(np.unique(fold)) == [0, 1, 2]
    events = ncctg["pfs2_event"].to_numpy()
    per_fold = [events[fold == j].sum() for j in range(3)]
    assert max(per_fold) - min(per_fold) <= 1  # stratified by event
    assert [f["n_test"] for f in res.info["folds"]] == [int((fold == j).sum()) for j in range(3)]
    assert np.isfinite(res.predictions["survival"].values).all()
    assert 0.55 < float(res.point["harrell_c"]) < 0.7
    assert res.loo == {}


def test_input_errors(ncctg, ncctg_fit):
    with pytest.raises(RechallengeError, match="outside the test cohort's follow-up"):
        validate(ncctg_fit, ncctg, times=(6, 40), n_draws=5, n_boot=0)
    with pytest.raises(RechallengeError, match="pfs2"):
        validate(ncctg_fit, ncctg.drop(columns=["pfs2_event"]), n_draws=5, n_boot=0)
    with pytest.raises(RechallengeError, match="k must be"):
        cross_validate(ncctg, k=1, spec=NCCTG_SPEC)
    with pytest.raises(RechallengeError, match="fit_kwargs may not set"):
        cross_validate(ncctg, k=3, spec=NCCTG_SPEC, fit_kwargs={"seed": 4})


def test_validate_a_saved_fit(ncctg, ncctg_fit, ncctg_result, tmp_path):
    from rechallenge.fitio import save

    path = save(ncctg_fit, tmp_path / "fit.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableFitWarning)
        again = validate(path, ncctg, train_cohort=ncctg, n_draws=100, n_boot=0, seed=1)
    xr.testing.assert_allclose(again.point, ncctg_result.point)  # same draws, same numbers


# --------------------------------------------------------------------------- known truth


def test_calibration_at_the_true_parameters_and_when_overdispersed(simulated, truth_result):
    """Predictions at the simulation's true parameters: slope ~ 1, ICI small, O/E ~ 1;
    every log-HR (and tumour effect) doubled: predictions too extreme, slope ~ 1/2."""
    point = truth_result.point
    np.testing.assert_allclose(point["cal_slope"].values, 1.0, atol=0.1)
    assert (point["ici"].values < 0.015).all()
    np.testing.assert_allclose(point["oe"].values, 1.0, atol=0.05)
    np.testing.assert_allclose(point["irae_cal_slope"].values, 1.0, atol=0.3)
    np.testing.assert_allclose(point["irae_cal_intercept"].values, 0.0, atol=0.15)
    doubled = validate(_truth_model(simulated.truth, scale=2.0), simulated.data, n_draws=3, n_boot=0).point
    assert (doubled["cal_slope"].values < 0.7).all()
    assert (doubled["ici"].values > 2 * point["ici"].values).all()
    assert (doubled["irae_cal_slope"].values < 0.75).all()
    # same ranking of PFS2 risk within tumour types; C changes only through the tumour effects
    assert abs(float(doubled["harrell_c"]) - float(point["harrell_c"])) < 0.03


def test_irae_metrics_are_scikit_learn_on_the_same_probabilities(simulated, truth_result):
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    pred = truth_result.predictions
    code = simulated.data["irae_recurrence"].map({"none": 0, "grade1_2": 1, "grade3plus": 2}).to_numpy(float)
    assessed = np.isfinite(code)
    assert truth_result.info["irae_assessed"] == assessed.sum()
    for outcome, y in (("irae_any", code[assessed] >= 1), ("irae_grade3plus", code[assessed] == 2)):
        p = pred[outcome].mean("draw").values[assessed]
        m = truth_result.point.sel(irae_outcome=outcome)
        assert float(m["irae_brier"]) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
        assert float(m["irae_log_loss"]) == pytest.approx(log_loss(y, p), abs=1e-12)
        assert float(m["irae_auc"]) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        p0 = pred[outcome].isel(draw=0).values[assessed]
        d0 = truth_result.metrics.isel(draw=0).sel(irae_outcome=outcome)
        assert float(d0["irae_brier"]) == pytest.approx(brier_score_loss(y, p0), abs=1e-12)
    fig = truth_result.plot_irae_calibration("irae_grade3plus")
    assert fig.axes[0].lines


@pytest.mark.slow
def test_cross_validate_simulated_cohort_with_irae():
    """k = 3 on a small simulated cohort, literature specification and priors."""
    sim = simulate_cohort(240, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableFitWarning)
        res = cross_validate(sim.data, k=3, n_draws=60, n_boot=20, seed=0,
                             fit_kwargs={"draws": 300, "tune": 300})
    assert len(res.info["folds"]) == 3
    assert np.isfinite(res.point["harrell_c"]) and 0.5 < float(res.point["harrell_c"]) < 0.85
    assert np.isfinite(res.point["irae_brier"].values).all()
    assert not res.irae_calibration.empty
    assert res.tripod_table()["section"].str.contains("irAE").any()
