"""Tidy summaries of a fit: posterior hazard/odds ratios next to their priors.

:func:`summarise_fit` returns one row per coefficient and baseline parameter with the
posterior median and central 95% credible interval on the natural scale (HR, OR,
months, probability), the same for the prior the fit used (from the prior set stamped
on the fit), and R-hat and bulk ESS. :func:`fit_report` renders it as text.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .priorset import PriorSet


def _prior_set(idata) -> PriorSet:
    return PriorSet.from_dict(json.loads(idata.attrs["prior_set"]))


def _rows(idata):
    """(label, outcome, measure, draws on natural scale, prior entry key, sampled draws).

    The last item is the (chain, draw) array of the sampled parameter behind the row,
    for its R-hat and ESS."""
    post = idata.posterior
    out = []
    if "log_hr" in post:
        for name in post["pfs2_covariate"].values:
            out.append((str(name), "pfs2", "HR", np.exp(post["log_hr"].sel(pfs2_covariate=name).values),
                        ("pfs2", str(name)), post["log_hr"].sel(pfs2_covariate=name).values))
    if "log_median" in post:
        out.append(("baseline_median", "pfs2", "median_months", np.exp(post["log_median"].values),
                    ("pfs2", "baseline_median"), post["log_median"].values))
        out.append(("weibull_shape", "pfs2", "shape", np.exp(post["log_shape"].values),
                    ("pfs2", "weibull_shape"), post["log_shape"].values))
    if "logit_cure" in post:
        out.append(("cure_fraction", "pfs2", "probability", 1 / (1 + np.exp(-post["logit_cure"].values)),
                    ("pfs2", "cure_fraction"), post["logit_cure"].values))
    if "log_or" in post:
        for name in post["irae_covariate"].values:
            out.append((str(name), "irae", "OR", np.exp(post["log_or"].sel(irae_covariate=name).values),
                        ("irae", str(name)), post["log_or"].sel(irae_covariate=name).values))
        out.append(("baseline_any", "irae", "probability", post["irae_p_any_ref"].values,
                    ("irae", "baseline_any"), post["irae_a_any"].values))
        out.append(("baseline_grade3plus", "irae", "probability", post["irae_p_grade3plus_ref"].values,
                    ("irae", "baseline_grade3plus"), post["irae_b_severe"].values))
    for sd_name, key in (("sigma_tumour", ("pfs2", "sigma_tumour_type")), ("sigma_centre", ("pfs2", "sigma_centre")),
                         ("sigma_tumour_irae", ("irae", "sigma_tumour_type")), ("sigma_organ", ("irae", "sigma_organ"))):
        if sd_name in post:
            out.append((sd_name, key[0], "group_sd", post[sd_name].values, key, post[sd_name].values))
    return out


def summarise_fit(idata, ci: float = 0.95) -> pd.DataFrame:
    """Posterior and prior summaries, one row per parameter (see module docstring)."""
    import arviz as az

    priors = _prior_set(idata)
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    records = []
    for label, outcome, measure, draws, key, sampled in _rows(idata):
        entry = priors[key] if key in priors else None
        prior_q = entry.quantiles([lo_q, 0.5, hi_q]) if entry is not None else [np.nan] * 3
        records.append({
            "outcome": outcome, "parameter": label, "measure": measure,
            "median": float(np.median(draws)), "lower": float(np.quantile(draws, lo_q)),
            "upper": float(np.quantile(draws, hi_q)),
            "prior_median": float(prior_q[1]), "prior_lower": float(prior_q[0]),
            "prior_upper": float(prior_q[2]),
            "r_hat": float(az.rhat(sampled)),
            "ess_bulk": float(az.ess(sampled, method="bulk")),
        })
    return pd.DataFrame.from_records(records)


def _sampler_settings(attrs) -> str:
    """``4 chains x 1000 draws after 1000 tuning, target acceptance 0.9`` (the target is
    absent from fits saved before it was stamped)."""
    text = f"{attrs['chains']} chains x {attrs['draws']} draws after {attrs['tune']} tuning"
    return text + (f", target acceptance {attrs['target_accept']:g}" if "target_accept" in attrs else "")


def fit_report(idata) -> str:
    """Readable text: reliability banner, diagnostics, and the summary table."""
    diag = json.loads(idata.attrs["diagnostics"])
    table = summarise_fit(idata)
    lines = []
    if int(idata.attrs.get("reliable", 0)):
        lines.append(f"Fit reliable: max R-hat {diag['max_rhat']:.3f}, min bulk ESS "
                     f"{diag['min_ess_bulk']:.0f}, {diag['divergences']} divergences.")
    else:
        lines.append("!!! UNRELIABLE FIT: " + "; ".join(diag["problems"]) + " !!!")
    imputed = json.loads(idata.attrs.get("n_imputed", "{}"))
    lines.append(f"Patients: {idata.attrs['n_patients']}, PFS2 events: {idata.attrs['n_events']}; "
                 f"imputed values: {', '.join(f'{k} {v}' for k, v in imputed.items()) or 'none'}.")
    lines.append(f"Priors: {_prior_set(idata).name} (sha256 {idata.attrs['priors_sha256'][:12]}); "
                 f"sampler {idata.attrs['sampler']} ({_sampler_settings(idata.attrs)}), seed {idata.attrs['seed']}.")
    lines.append("")

    def fmt(x: float) -> str:
        return "-" if not np.isfinite(x) else (f"{x:.2f}" if abs(x) < 100 else f"{x:.0f}")
    header = f"{'outcome':7s}  {'parameter':22s} {'measure':13s} {'posterior (95% CrI)':24s} {'prior (95%)':24s} {'R-hat':>6s} {'ESS':>6s}"
    lines += [header, "-" * len(header)]
    for r in table.itertuples():
        post = f"{fmt(r.median)} ({fmt(r.lower)}-{fmt(r.upper)})"
        prior = f"{fmt(r.prior_median)} ({fmt(r.prior_lower)}-{fmt(r.prior_upper)})"
        lines.append(f"{r.outcome:7s}  {r.parameter:22s} {r.measure:13s} {post:24s} {prior:24s} "
                     f"{r.r_hat:6.3f} {r.ess_bulk:6.0f}")
    return "\n".join(lines)
