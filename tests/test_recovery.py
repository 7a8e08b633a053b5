"""Recovery of known truth from simulated cohorts (slow: `make test-slow`).

Cohorts of 2,000 patients are simulated from the model's own generative process with
known log-HRs, log-ORs and tumour-type effects and fitted with the default (literature)
model, for PFS2 and irAE, with complete data and with 20% of NLR and ECOG missing at
random.

Why replicates: at n = 2,000 the irAE log-ORs have standard errors of 0.08–0.13 even for
the maximum-likelihood estimate, so "|posterior mean − truth| < 0.15 for every
coefficient" holds in only about 60% of single cohorts (measured with the MLE over 30
simulated cohorts). A single-seed check would be a coin flip, and choosing a seed that
passes would be cherry-picking. So the criterion is applied to what a single cohort can
deliver on average, over replicates with seeds fixed in advance: per coefficient, mean
error (bias) < 0.10, root-mean-square error < 0.15 and 95% CrI coverage in at least 5 of
8 replicates (under exact calibration P(≤ 4 of 8) = 0.04% per coefficient, about 1% for
the 24 checks; a threshold of 6 would fail 13% of correct runs by chance); and R-hat ≤ 1.01 for a full-length fit (4 × 1,000 draws). The design
balances the irAE covariates (a third of patients per discontinuation reason, half
CTLA-4 regimens, every irAE outcome assessed, P(any) = 0.45) so that the data carry
information on every log-OR. The 200-replicate coverage study belongs to the
simulation-study tools.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy.special import logit

from rechallenge.fit import fit
from rechallenge.simulate import CovariateSpec, default_truth, simulate_cohort

pytestmark = pytest.mark.slow

PFS2_CARD = ("ecog_ge2", "pfs1_lt6", "tfi_le6", "liver_mets", "nlr", "reason_progression", "reason_irae")
IRAE_CARD = ("regimen_ctla4", "prior_irae_grade3plus", "reason_progression", "reason_irae", "tfi_le6")
SEEDS = tuple(range(101, 109))
N = 2000


def design() -> tuple[CovariateSpec, object]:
    covariates = dataclasses.replace(
        CovariateSpec(), ctla4_other_prob=0.5, liver_mets_prob=0.3,
        ecog_probs=(0.3, 0.4, 0.25, 0.05, 0.0),
        irae_grade_probs_otherwise=(0.4, 0.15, 0.15, 0.25, 0.05),
        reason_probs={"progression": 1 / 3, "irae": 1 / 3, "clinical_decision": 1 / 3})
    truth = dataclasses.replace(default_truth(), a_any=float(logit(0.45)), a_3=float(logit(0.15)))
    return covariates, truth


def simulate(seed: int, missing):
    covariates, truth = design()
    return simulate_cohort(N, seed=seed, covariates=covariates, truth=truth, missing=missing,
                           irae_assessed_fraction=1.0)


def replicate_errors(missing):
    """Posterior mean − truth and CrI coverage per coefficient, over the replicates."""
    errors: dict[tuple[str, str], list[float]] = {}
    covered: dict[tuple[str, str], list[bool]] = {}
    tumour_cover = []
    for seed in SEEDS:
        sim = simulate(seed, missing)
        idata = fit(sim.data, draws=500, tune=500, chains=2, seed=seed, progressbar=False,
                    log_likelihood=False)
        post = idata.posterior
        for outcome, names, var, dim, truth in (
                ("pfs2", PFS2_CARD, "log_hr", "pfs2_covariate", sim.truth.beta),
                ("irae", IRAE_CARD, "log_or", "irae_covariate", sim.truth.gamma)):
            for name in names:
                draws = post[var].sel({dim: name}).values.ravel()
                lo, hi = np.quantile(draws, [0.025, 0.975])
                errors.setdefault((outcome, name), []).append(float(draws.mean() - truth[name]))
                covered.setdefault((outcome, name), []).append(bool(lo <= truth[name] <= hi))
        for level, n in sim.data["tumour_type"].value_counts().items():
            if n >= 100:
                draws = post["tumour_effect"].sel(tumour_type=level).values.ravel()
                lo, hi = np.quantile(draws, [0.025, 0.975])
                tumour_cover.append(bool(lo <= sim.truth.tumour_effects[level] <= hi))
    return errors, covered, tumour_cover


@pytest.mark.parametrize("missing", [None, {"nlr": 0.2, "ecog": 0.2}], ids=["complete", "nlr_ecog_missing"])
def test_recovery_over_replicates(missing):
    errors, covered, tumour_cover = replicate_errors(missing)
    failures = []
    for key, err in errors.items():
        err = np.asarray(err)
        bias, rmse, cover = err.mean(), np.sqrt((err ** 2).mean()), sum(covered[key])
        if abs(bias) >= 0.10 or rmse >= 0.15 or cover < 5:
            failures.append((key, round(bias, 3), round(rmse, 3), cover))
    assert not failures, failures
    assert np.mean(tumour_cover) >= 0.8, np.mean(tumour_cover)


@pytest.mark.parametrize("missing", [None, {"nlr": 0.2, "ecog": 0.2}], ids=["complete", "nlr_ecog_missing"])
def test_full_length_fit_converges(missing):
    sim = simulate(SEEDS[0], missing)
    idata = fit(sim.data, draws=1000, tune=1000, chains=4, seed=1, progressbar=False,
                log_likelihood=False)
    diag = json.loads(idata.attrs["diagnostics"])
    assert diag["max_rhat"] <= 1.01 and diag["divergences"] == 0, diag
