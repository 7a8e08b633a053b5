"""Conversions of published numbers to normals on the modelling scale.

Expected values are hand calculations (arithmetic shown), not outputs of the code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rechallenge import evidence as ev

Z = 1.959963984540054  # Φ⁻¹(0.975)


def test_se_from_ci_matches_hand_calculation():
    # Zhao (ref 46): HR 1.83 (1.39-2.40); (ln 2.40 - ln 1.39) / (2 * 1.96) = 0.139330
    assert ev.se_from_ci(1.83, 1.39, 2.40) == pytest.approx(0.1393304, abs=1e-6)


def test_se_from_ci_with_lower_limit_reported_as_zero_uses_upper_half():
    # Liu (ref 33): OR 0.01 (0.00-0.25); (ln 0.25 - ln 0.01) / 1.96 = 1.642314
    assert ev.se_from_ci(0.01, 0.0, 0.25) == pytest.approx(1.642314, abs=1e-5)


def test_se_from_p_matches_hand_calculation():
    # Zhang (ref 58): HR 2.56, p = 0.003; ln 2.56 / Φ⁻¹(0.9985) = 0.940007 / 2.967738
    assert ev.se_from_p(2.56, 0.003) == pytest.approx(0.316742, abs=1e-6)
    # Musaelyan (ref 59): HR 5.89, p = 0.001; 1.773256 / 3.290527
    assert ev.se_from_p(5.89, 0.001) == pytest.approx(0.538897, abs=1e-6)


def test_p_bound_gives_the_largest_consistent_se():
    # "p < 0.001": the true p is smaller, so the SE is at most the value at p = 0.001.
    at_bound = ev.se_from_p(1.83, 0.001)
    for p in (1e-4, 1e-6):
        assert ev.se_from_p(1.83, p) < at_bound
    value, bound = ev.parse_p("<0.001")
    assert (value, bound) == (0.001, True)
    assert ev.parse_p("P = 0.013") == (0.013, False)
    assert ev.parse_p("") == (None, False)
    with pytest.raises(ValueError):
        ev.parse_p("1.7")


def test_se_from_ci_and_from_p_agree_when_the_report_is_consistent():
    # A consistent report: the p-value implied by the CI gives back the CI's SE.
    se = ev.se_from_ci(1.83, 1.39, 2.40)
    p = ev.p_from_ci(1.83, 1.39, 2.40)
    assert ev.se_from_p(1.83, p) == pytest.approx(se, rel=1e-9)


def test_ci_p_disagreement_is_detected():
    # Vauchier (ref 42): HR 0.25 (0.08-0.84) implies p = 0.0208, reported p = 0.07.
    assert ev.p_from_ci(0.25, 0.08, 0.84) == pytest.approx(0.02083, abs=1e-4)
    assert not ev.ci_and_p_agree(0.25, 0.08, 0.84, 0.07, bound=False)
    # Musaelyan (ref 40/59): HR 3.41 (1.28-9.05), p = 0.013 agrees (implied 0.014).
    assert ev.ci_and_p_agree(3.41, 1.28, 9.05, 0.013, bound=False)
    # A bound is violated when the CI implies a larger p.
    assert not ev.ci_and_p_agree(1.2, 0.9, 1.6, 0.05, bound=True)


def test_logit_from_rate_matches_hand_calculation():
    # Yang (ref 50): 9 of 40; logit((9 + .5) / (31 + .5)), sqrt(1/9.5 + 1/31.5)
    mean, se = ev.logit_from_rate(0.225, 40)
    assert mean == pytest.approx(math.log(9.5 / 31.5), abs=1e-12)
    assert se == pytest.approx(0.370148, abs=1e-6)


def test_log_or_from_rates_matches_woolf():
    # 44% of 32 vs 32% of 135 (NSCLC review ref 31), 0.5 added to each cell
    mean, se = ev.log_or_from_rates(0.44, 32, 0.32, 135)
    assert mean == pytest.approx(0.513910, abs=1e-6)
    assert se == pytest.approx(0.395719, abs=1e-6)


def test_log_hr_from_medians_is_exact_for_exponential_survival():
    # Exponential: median = ln 2 / rate, so the median ratio is the rate ratio.
    rate_exposed, rate_reference = 0.30, 0.15
    mean, se = ev.log_hr_from_medians(math.log(2) / rate_exposed, math.log(2) / rate_reference,
                                      events_exposed=40, events_reference=60)
    assert mean == pytest.approx(math.log(rate_exposed / rate_reference), abs=1e-12)
    assert se == pytest.approx(math.sqrt(1 / 40 + 1 / 60), abs=1e-12)


def test_log_hr_from_landmarks_inverts_proportional_hazards():
    # Under PH, S_exp(t) = S_ref(t) ** HR.
    s_ref, hr = 0.409, 1.7
    mean, _ = ev.log_hr_from_landmarks(s_ref ** hr, 0.001, s_ref, 0.001)
    assert mean == pytest.approx(math.log(hr), abs=1e-12)


def test_log_hr_from_landmarks_se_matches_monte_carlo():
    rng = np.random.default_rng(1)
    s_e, s_r, n_e, n_r = 0.25, 0.40, 400, 500
    _, se = ev.log_hr_from_landmarks(s_e, s_e * (1 - s_e) / n_e, s_r, s_r * (1 - s_r) / n_r)
    sim_e = rng.binomial(n_e, s_e, 20000) / n_e
    sim_r = rng.binomial(n_r, s_r, 20000) / n_r
    g = np.log(-np.log(sim_e)) - np.log(-np.log(sim_r))
    assert se == pytest.approx(g.std(), rel=0.05)


def test_weibull_shape_recovered_from_median_and_landmark():
    k, lam = 0.7, 4.0
    median = lam * math.log(2) ** (1 / k)
    s12 = math.exp(-((12 / lam) ** k))
    log_k, se = ev.weibull_shape_from_median_landmark(median, 0.1, 12.0, s12, 0.2)
    assert math.exp(log_k) == pytest.approx(k, rel=1e-10)
    assert se > 0


def _row(**kw):
    base = dict(row_id="T1", measure="HR", estimate=2.0, lower95=1.0, upper95=4.0, p_value="",
                direction="as_reported", endpoint="pfs2", cutoff_match="exact",
                analysis="multivariable", extra_discounts="", n=100.0, n_exposed=float("nan"),
                n_reference=float("nan"), reference_estimate=float("nan"),
                landmark_months=float("nan"))
    base.update(kw)
    return base


DISCOUNTS = {"other_endpoint": 2.0, "endpoint_unclear": 1.5, "other_cutoff": 1.5,
             "univariate": 1.5, "median_ratio": 2.0, "landmark_ratio": 1.5,
             "direction_ambiguous": 2.0, "ci_p_conflict": 1.5, "extrapolation": 2.0, "no_n": 1.0}


def test_inverted_row_flips_the_sign():
    as_reported = ev.row_effect(_row(estimate=0.5, lower95=0.25, upper95=1.0),
                                parameter_endpoint="pfs2", discounts=DISCOUNTS)
    inverted = ev.row_effect(_row(estimate=0.5, lower95=0.25, upper95=1.0, direction="inverted"),
                             parameter_endpoint="pfs2", discounts=DISCOUNTS)
    assert as_reported.mean == pytest.approx(math.log(0.5))
    assert inverted.mean == pytest.approx(-math.log(0.5))
    assert inverted.se == as_reported.se


def test_discounts_multiply_the_variance():
    plain = ev.row_effect(_row(), parameter_endpoint="pfs2", discounts=DISCOUNTS)
    assert plain.discounts == () and plain.inflation == 1.0
    # OS for PFS (2.0) x other cut-off (1.5) x univariate (1.5) x listed ambiguity (2.0)
    row = _row(endpoint="os2", cutoff_match="different", analysis="univariate",
               extra_discounts="direction_ambiguous")
    eff = ev.row_effect(row, parameter_endpoint="pfs2", discounts=DISCOUNTS)
    assert set(eff.discounts) == {"other_endpoint", "other_cutoff", "univariate", "direction_ambiguous"}
    assert eff.se ** 2 == pytest.approx(plain.se ** 2 * 2.0 * 1.5 * 1.5 * 2.0)
    assert eff.mean == plain.mean


def test_unknown_discount_is_an_error():
    with pytest.raises(KeyError, match="not defined"):
        ev.row_effect(_row(extra_discounts="made_up"), parameter_endpoint="pfs2", discounts=DISCOUNTS)


def test_rate_without_n_uses_the_pseudo_sample_size():
    eff = ev.row_effect(_row(measure="rate", estimate=0.3, lower95=float("nan"),
                             upper95=float("nan"), n=float("nan"), endpoint="irae_any"),
                        parameter_endpoint="irae_any", discounts=DISCOUNTS, rate_pseudo_n=20)
    mean, se = ev.logit_from_rate(0.3, 20)
    assert (eff.mean, eff.raw_se) == pytest.approx((mean, se))
    assert "no_n" in eff.discounts
