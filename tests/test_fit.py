"""Fitting: agreement with an independent reference on real data, prior reproduction,
the convergence gate, reproducibility and save/load."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from rechallenge.cohort import validate_cohort
from rechallenge.errors import RechallengeError
from rechallenge.fit import (TARGET_ACCEPT, TARGET_ACCEPT_FUSED, TARGET_ACCEPT_HIGH, UnreliableFitWarning,
                             default_target_accept, fit, is_reliable)
from rechallenge.fitio import load, save
from rechallenge.priors import literature_priors
from rechallenge.simulate import demo_cohort
from rechallenge.summary import fit_report, summarise_fit

DAYS_PER_MONTH = 365.25 / 12
NCCTG_SPEC = {"name": "ncctg", "pfs2": {"baseline": "weibull", "covariates": ["ecog_ge2"],
                                        "extra": {"female": "binary"}, "groups": []}, "irae": None}


@pytest.fixture(scope="module")
def ncctg() -> pd.DataFrame:
    """NCCTG advanced lung cancer data (Loprinzi et al. 1994), as shipped by lifelines."""
    from lifelines.datasets import load_lung

    lung = load_lung().dropna(subset=["ph.ecog"]).reset_index(drop=True)  # 1 patient, as lifelines
    return pd.DataFrame({
        "patient_id": [f"L{i:03d}" for i in range(len(lung))],
        "pfs2_months": lung["time"] / DAYS_PER_MONTH,
        "pfs2_event": lung["status"].astype(int),
        "ecog": lung["ph.ecog"].astype(int),
        "female": (lung["sex"] == 2).astype(int),
    })


def test_ncctg_log_hrs_match_lifelines_weibull(ncctg):
    """Vague priors: ECOG >= 2 and sex log-HRs within 0.05 of lifelines' Weibull MLE."""
    from lifelines import WeibullAFTFitter

    ref = ncctg.assign(ecog_ge2=(ncctg["ecog"] >= 2).astype(int))[
        ["pfs2_months", "pfs2_event", "ecog_ge2", "female"]]
    aft = WeibullAFTFitter().fit(ref, "pfs2_months", "pfs2_event")
    rho = float(np.exp(aft.params_.loc[("rho_", "Intercept")]))
    # Weibull AFT -> PH: log HR = -rho * beta_AFT
    expected = {c: -rho * float(aft.params_.loc[("lambda_", c)]) for c in ("ecog_ge2", "female")}
    idata = fit(ncctg, NCCTG_SPEC, "vague", draws=1000, tune=1000, chains=4, seed=3, progressbar=False)
    assert is_reliable(idata)
    log_hr = idata.posterior["log_hr"].mean(("chain", "draw"))
    for name, value in expected.items():
        assert abs(float(log_hr.sel(pfs2_covariate=name)) - value) < 0.05, (name, value)
    shape = float(np.exp(idata.posterior["log_shape"]).mean())
    assert shape == pytest.approx(rho, abs=0.05)


@pytest.fixture(scope="module")
def demo_fit():
    return fit(demo_cohort().data, draws=500, tune=500, chains=2, seed=11, progressbar=False)


def test_fit_groups_and_stamp(demo_fit):
    assert {"posterior", "log_likelihood", "log_prior", "sample_stats"} <= set(demo_fit.groups())
    ll = demo_fit.log_likelihood
    assert ll["pfs2"].shape[-1] == 300 and ll["irae"].shape[-1] == 300
    assert np.isfinite(ll["pfs2"].values).all()
    attrs = demo_fit.attrs
    assert attrs["priors_sha256"] == literature_priors().hash()
    assert json.loads(attrs["n_imputed"]) == {"nlr": int(demo_cohort().data["nlr"].isna().sum())}
    for key in ("rechallenge_version", "pymc_version", "model_spec", "seed", "diagnostics"):
        assert key in attrs
    # NLR is imputed in the demo cohort: the higher default acceptance target is used
    assert attrs["target_accept"] == TARGET_ACCEPT_HIGH
    # the log prior is the prior's log density at the draws
    entry = literature_priors()[("pfs2", "tfi_le6")]
    draws = demo_fit.posterior["log_hr"].sel(pfs2_covariate="tfi_le6").values.ravel()
    log_prior = demo_fit.log_prior["log_hr"].sel(pfs2_covariate="tfi_le6").values.ravel()
    assert np.allclose(log_prior, entry.distribution.logpdf(draws))


def test_stamped_diagnostics_are_arviz_diagnostics_of_the_free_parameters(demo_fit):
    """The gate's numbers (rechallenge.convergence) equal ArviZ's over the same parameters."""
    import arviz as az

    from rechallenge.fit import monitored_names
    from rechallenge.model import build_model
    from rechallenge.model_data import prepare_data
    from rechallenge.modelspec import load_spec

    stamped = json.loads(demo_fit.attrs["diagnostics"])
    model = build_model(prepare_data(validate_cohort(demo_cohort().data), load_spec()), literature_priors())
    post = demo_fit.posterior[monitored_names(model)]
    assert stamped["max_rhat"] == pytest.approx(float(az.rhat(post).to_array().max()), rel=1e-10)
    assert stamped["min_ess_bulk"] == pytest.approx(float(az.ess(post, method="bulk").to_array().min()), rel=1e-10)
    assert stamped["min_ess_tail"] == pytest.approx(float(az.ess(post, method="tail").to_array().min()), rel=1e-10)


def test_pointwise_loglik_sums_to_the_joint_likelihood(demo_fit):
    """Patients without missing values: pfs2 + irae pointwise terms are their joint
    log-likelihood, so the sum over patients must not depend on the split."""
    ll = demo_fit.log_likelihood
    total = (ll["pfs2"] + ll["irae"]).sum("patient_id" if "patient_id" in ll.dims else "patient")
    assert np.isfinite(total.values).all()
    assert (ll["irae"].values <= 0).all()


def test_summary_and_report(demo_fit):
    table = summarise_fit(demo_fit)
    assert {"tfi_le6", "nlr", "regimen_ctla4", "baseline_any"} <= set(table["parameter"])
    hr = table[(table.parameter == "ecog_ge2")].iloc[0]
    assert hr["lower"] < hr["median"] < hr["upper"]
    assert hr["prior_lower"] < hr["prior_median"] < hr["prior_upper"]
    assert "ecog_ge2" in fit_report(demo_fit)


def test_save_load_roundtrip_and_tamper_detection(demo_fit, tmp_path):
    path = save(demo_fit, tmp_path / "fit.nc")
    again = load(path)
    pd.testing.assert_frame_equal(summarise_fit(again), summarise_fit(demo_fit))
    # tamper: change one draw
    again.posterior["log_hr"].values[0, 0, 0] += 0.1
    again.to_netcdf(tmp_path / "tampered.nc")
    with pytest.raises(RechallengeError, match="integrity"):
        load(tmp_path / "tampered.nc")
    (tmp_path / "junk.nc").write_bytes(b"not a netcdf file at all")
    with pytest.raises(RechallengeError, match="not a readable"):
        load(tmp_path / "junk.nc")
    with pytest.raises(RechallengeError, match="NetCDF"):
        save(demo_fit, tmp_path / "fit.pkl")


def test_same_seed_same_numbers_and_compiled_model_reuse(demo_fit):
    from rechallenge import fit as fit_module

    n_compiled = len(fit_module._COMPILED)
    again = fit(demo_cohort().data, draws=500, tune=500, chains=2, seed=11, progressbar=False)
    assert len(fit_module._COMPILED) == n_compiled  # reused, not recompiled
    assert np.array_equal(again.posterior["log_hr"].values, demo_fit.posterior["log_hr"].values)
    other = fit(demo_cohort().data, draws=500, tune=500, chains=2, seed=12, progressbar=False)
    assert not np.array_equal(other.posterior["log_hr"].values, demo_fit.posterior["log_hr"].values)


def _assert_quantiles_match(draws, expected, name, floor=0.02):
    """Sample quantiles (5%, 50%, 95%) within 4 Monte Carlo SEs of the exact ones.

    The MCSE of each quantile comes from the chains (ArviZ, Vehtari et al. 2021); the
    robust-mixture priors have long tails (a 10% component with SD 2), so their 5% and 95%
    quantiles carry an MCSE of ~0.1 with 2 x 4000 draws, against ~0.01 for the medians.
    ``floor`` covers the rounding of quantiles reported by the prior set.
    """
    import arviz as az

    probs = (0.05, 0.5, 0.95)
    got = np.quantile(draws.ravel(), probs)
    mcse = np.array([float(az.mcse(draws, method="quantile", prob=q)) for q in probs])
    assert np.all(np.abs(got - expected) <= 4 * mcse + floor), (name, got, expected, mcse)


def test_prior_only_fit_reproduces_the_prior_set():
    idata = fit(demo_cohort().data, prior_only=True, draws=4000, tune=1000, chains=2, seed=5,
                progressbar=False, log_likelihood=False)
    priors = literature_priors()
    for name in ("ecog_ge2", "pfs1_lt6", "tfi_le6", "liver_mets", "nlr", "reason_progression"):
        draws = idata.posterior["log_hr"].sel(pfs2_covariate=name).values
        _assert_quantiles_match(draws, np.log(priors[("pfs2", name)].quantiles([0.05, 0.5, 0.95])), name)
    for var, key in (("log_median", ("pfs2", "baseline_median")), ("log_shape", ("pfs2", "weibull_shape"))):
        draws = idata.posterior[var].values
        _assert_quantiles_match(draws, np.log(priors[key].quantiles([0.05, 0.5, 0.95])), var)
    p_any = idata.posterior["irae_p_any_ref"].values
    _assert_quantiles_match(p_any, priors[("irae", "baseline_any")].quantiles([0.05, 0.5, 0.95]),
                            "irae_p_any_ref", floor=0.005)


def test_under_sampled_fit_is_flagged_unreliable():
    with pytest.warns(UnreliableFitWarning, match="UNRELIABLE"):
        idata = fit(demo_cohort().data, draws=15, tune=10, chains=2, seed=1, progressbar=False,
                    log_likelihood=False)
    assert not is_reliable(idata)
    assert json.loads(idata.attrs["diagnostics"])["problems"]
    assert "UNRELIABLE" in fit_report(idata)


@pytest.mark.parametrize("kwargs, match", [
    ({"sampler": "gibbs"}, "sampler must be"), ({"draws": 0}, "draws must be"),
    ({"chains": 1.5}, "chains must be"), ({"target_accept": 1.0}, "target_accept must be"),
    ({"target_accept": 0}, "target_accept must be"), ({"target_accept": "0.9"}, "target_accept must be"),
])
def test_bad_fit_arguments(kwargs, match):
    with pytest.raises(RechallengeError, match=match):
        fit(demo_cohort().data, **kwargs)


def test_cohort_argument_types():
    """A simulated cohort is fitted like its data frame; anything else that is not a
    cohort, a frame or a path is one clear error (not a TypeError from pathlib)."""
    from rechallenge.simulate import simulate_cohort

    simulated = simulate_cohort(120, seed=8)
    kwargs = dict(draws=20, tune=20, chains=1, seed=4, progressbar=False, log_likelihood=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableFitWarning)
        from_object, from_frame = fit(simulated, **kwargs), fit(simulated.data, **kwargs)
    np.testing.assert_array_equal(from_object.posterior["log_hr"].values, from_frame.posterior["log_hr"].values)
    with pytest.raises(RechallengeError, match="cohort must be .* got list"):
        fit([1, 2, 3], **kwargs)


def test_target_accept_default_depends_on_imputation_and_can_be_set():
    """0.9 for complete covariates and non-centred groups, 0.95 when a covariate is imputed
    or a group is centred; an explicit value wins and is stamped (it changes the sampler's
    step size)."""
    from rechallenge.cohort import validate_cohort
    from rechallenge.model_data import prepare_data
    from rechallenge.modelspec import load_spec

    spec = load_spec("literature")
    frame = demo_cohort().data
    assert frame["nlr"].isna().any()
    required = sorted(spec.required_columns())
    with_missing = prepare_data(validate_cohort(frame, required=required), spec)
    complete = prepare_data(validate_cohort(frame.dropna(subset=["nlr"]), required=required), spec)
    assert default_target_accept(with_missing) == TARGET_ACCEPT_HIGH > TARGET_ACCEPT
    assert default_target_accept(complete) == TARGET_ACCEPT
    assert default_target_accept(with_missing, prior_only=True) == TARGET_ACCEPT
    # a group of at least centred_min_patients patients takes the centred form: 0.95 too
    nsclc = (complete.tumour_idx == complete.levels["tumour_type"].index("nsclc")).sum()
    centred = prepare_data(validate_cohort(frame.dropna(subset=["nlr"]), required=required),
                           spec.replace(centred_min_patients=int(nsclc)))
    assert default_target_accept(centred) == TARGET_ACCEPT_HIGH
    # the fused density has its own (its parameterisation has no funnel); prior-only fits are never fused
    assert default_target_accept(centred, fused=True) == TARGET_ACCEPT_FUSED < TARGET_ACCEPT
    assert default_target_accept(complete, prior_only=True, fused=True) == TARGET_ACCEPT
    kwargs = dict(draws=30, tune=30, chains=1, seed=2, progressbar=False, log_likelihood=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableFitWarning)
        low = fit(frame, target_accept=0.6, **kwargs)
        high = fit(frame, target_accept=0.99, **kwargs)
    assert low.attrs["target_accept"] == 0.6 and high.attrs["target_accept"] == 0.99
    # a higher target gives smaller steps
    assert float(high.sample_stats["step_size"].mean()) < float(low.sample_stats["step_size"].mean())


def test_numpyro_without_jax_is_a_clear_error():
    pytest.importorskip("pymc")
    try:
        import numpyro  # noqa: F401
        pytest.skip("numpyro is installed here")
    except ImportError:
        pass
    with pytest.raises(RechallengeError, match="needs jax and numpyro"):
        fit(demo_cohort().data, sampler="numpyro", draws=10, tune=10, chains=1, progressbar=False)


def test_fixed_group_levels_give_one_model_structure():
    """Cohorts that lack a rare tumour type or organ share the compiled model's structure
    when the full category lists are given (what simulation studies do)."""
    from rechallenge.cohort import validate_cohort
    from rechallenge.fit import _structure_key
    from rechallenge.model_data import prepare_data
    from rechallenge.modelspec import load_spec
    from rechallenge.simulate import IRAE_ORGANS, TUMOUR_TYPES

    spec, priors = load_spec("literature"), literature_priors()
    full = {"tumour_type": TUMOUR_TYPES, "prior_irae_organ": IRAE_ORGANS}
    whole = demo_cohort().data
    without = whole[(whole["tumour_type"] != "nsclc") & (whole["prior_irae_organ"] != "colitis")]
    keys = set()
    for frame in (whole, without):
        cohort = validate_cohort(frame, required=sorted(spec.required_columns()), extra=spec.extra_types)
        default = prepare_data(cohort, spec)
        fixed = prepare_data(cohort, spec, group_levels=full)
        assert set(fixed.levels["tumour_type"]) == set(TUMOUR_TYPES)
        assert set(fixed.levels["prior_irae_organ"]) == set(IRAE_ORGANS)
        sizes = dict(zip(fixed.levels["tumour_type"], fixed.group_sizes("tumour_type")))
        assert sizes["nsclc"] == (frame["tumour_type"] == "nsclc").sum()
        assert sum(sizes.values()) == len(frame)
        keys.add(_structure_key(fixed, spec, priors, False))
        if frame is without:
            assert "nsclc" not in default.levels["tumour_type"]
    assert len(keys) == 1
    with pytest.raises(RechallengeError, match="not in the given levels"):
        fit(whole, group_levels={"tumour_type": ["melanoma"]}, draws=10, tune=10, chains=1)
