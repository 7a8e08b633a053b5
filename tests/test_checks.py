"""Prior-data conflict report and LOO model comparison, on cohorts with known truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rechallenge.checks import compare_specifications, conflict_report, cjs_distance
from rechallenge.fit import fit
from rechallenge.modelspec import load_spec
from rechallenge.simulate import default_truth, simulate_cohort


def test_cjs_distance_properties():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 4000)
    assert cjs_distance(x, x) == 0
    assert cjs_distance(x, rng.permutation(x)) == 0
    near, far = cjs_distance(x, x + 0.2), cjs_distance(x, x + 1.0)
    assert 0 < near < far
    # weights that tilt the sample move it away
    w = np.exp(0.5 * x)
    assert cjs_distance(x, x, wy=w) > 0.05


@pytest.fixture(scope="module")
def conflicting_fit():
    """300 patients in whom high NLR *protects* (HR 0.5), against a literature prior
    centred on HR 3.3; every other effect is as the literature says."""
    truth = dataclasses.replace(default_truth(), beta={**default_truth().beta, "nlr": float(np.log(0.5))})
    sim = simulate_cohort(300, seed=31, truth=truth)
    return fit(sim.data, draws=1000, tune=1000, chains=2, seed=31, progressbar=False)


def test_conflict_report_flags_the_conflicting_covariate(conflicting_fit):
    report = conflict_report(conflicting_fit).set_index(["outcome", "parameter"])
    nlr = report.loc[("pfs2", "nlr")]
    assert nlr["prior_vague_weight"] == pytest.approx(0.1)
    assert nlr["posterior_vague_weight"] > 0.4          # the data moved to the vague component
    assert nlr["diagnosis"] == "prior-data conflict"
    tfi = report.loc[("pfs2", "tfi_le6")]
    assert tfi["posterior_vague_weight"] < 0.2          # agreement: stays on the MAP part
    assert tfi["diagnosis"] in ("ok", "weak likelihood")
    # no other PFS2 coefficient (all simulated as the literature says) is in conflict
    others = report.loc["pfs2"].drop(index="nlr")
    assert not (others["diagnosis"] == "prior-data conflict").any()


def test_loo_prefers_the_cure_model_when_there_is_a_cure_fraction():
    truth = dataclasses.replace(default_truth(), cure_fraction=0.35)
    data = simulate_cohort(400, seed=41, truth=truth).data
    base = load_spec()
    fits = {name: fit(data, spec, draws=500, tune=500, chains=2, seed=41, progressbar=False)
            for name, spec in (("weibull", base), ("weibull_cure", base.replace(cure_fraction=True)))}
    table = compare_specifications(fits)
    assert table.index[0] == "weibull_cure"
    assert table.loc["weibull", "elpd_diff"] > 2 * table.loc["weibull", "dse"]


def test_prior_predictive_check_flags_a_cohort_the_priors_cannot_produce():
    from rechallenge.prior_check import prior_predictive_check

    ordinary = prior_predictive_check(simulate_cohort(300, seed=5).data, draws=500, seed=1)
    assert not ordinary.table["flag"].any(), ordinary.table
    # nobody progresses for years and irAEs come back in nearly everyone
    truth = dataclasses.replace(default_truth(), log_median_ref=np.log(400.0), a_any=4.0, a_3=3.0)
    odd = prior_predictive_check(simulate_cohort(300, seed=5, truth=truth).data, draws=500, seed=1)
    flagged = set(odd.table.loc[odd.table["flag"], "statistic"])
    assert {"pfs2_km_6mo", "irae_any"} <= flagged, odd.table
    assert odd.curves.shape == (500, odd.times.size)
    assert odd.plot() is not None
