"""Fit-speed benchmark: nutpie (as `rechallenge.fit` uses it) vs PyMC's default NUTS.

For each cohort size (simulated by the package's generator, complete covariates),
default literature model (Weibull PFS2 + sequential-logit irAE, tumour-type and organ
intercepts), 4 chains x 1000 draws after 1000 tuning, in ONE process:

* nutpie through `rechallenge.fit.fit` — the compiled model is cached per model
  structure and reused with new data, so only the first size pays the compile; the
  "first-ever compile" is reported on its own line;
* a refit of a new cohort of the same size (what simulation studies do);
* PyMC's default sampler (`pm.sample`, C backend) on the same PyMC model, compile
  included (up to --pymc-max patients).

Reported: wall seconds (compile and sampling apart for nutpie), bulk ESS per second of
the slowest parameter, divergences, max R-hat, mean leapfrog steps per draw.

Usage: python benchmarks/fit_speed.py [N ...] [--pymc-max N]; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

from _common import machine

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="*", type=int, default=[300, 3000, 30000])
    parser.add_argument("--pymc-max", type=int, default=30000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args()

    t0 = time.perf_counter()
    import pymc as pm

    from rechallenge import fit as fit_module
    from rechallenge.cohort import validate_cohort
    from rechallenge.fit import default_target_accept, diagnose, fit, monitored_names
    from rechallenge.model import build_model
    from rechallenge.model_data import prepare_data
    from rechallenge.modelspec import load_spec
    from rechallenge.priors import literature_priors
    from rechallenge.simulate import simulate_cohort
    print(f"imports {time.perf_counter() - t0:.1f} s", flush=True)
    spec, priors = load_spec(), literature_priors()
    kw = dict(draws=args.draws, tune=args.tune, chains=args.chains, progressbar=False, log_likelihood=False)
    rows = []
    for n in args.sizes:
        cohort = simulate_cohort(n, seed=n).data
        n_compiled = len(fit_module._COMPILED)
        t = time.perf_counter()
        idata = fit(cohort, priors=priors, seed=1, **kw)
        total = time.perf_counter() - t
        compile_s = fit_module.LAST_TIMINGS["compile"]
        sample_s = fit_module.LAST_TIMINGS["sample"]
        d = __import__("json").loads(idata.attrs["diagnostics"])
        steps = float(idata.sample_stats["n_steps"].mean())
        label = "nutpie (first-ever compile)" if len(fit_module._COMPILED) > n_compiled else "nutpie (compiled model reused)"
        rows.append((n, label, compile_s, sample_s, total, d["min_ess_bulk"] / total, d["divergences"],
                     d["max_rhat"], steps))
        t = time.perf_counter()
        idata = fit(simulate_cohort(n, seed=n + 1).data, priors=priors, seed=2, **kw)
        total = time.perf_counter() - t
        d = __import__("json").loads(idata.attrs["diagnostics"])
        rows.append((n, "nutpie refit (new cohort)", fit_module.LAST_TIMINGS["compile"],
                     fit_module.LAST_TIMINGS["sample"], total, d["min_ess_bulk"] / total, d["divergences"],
                     d["max_rhat"], float(idata.sample_stats["n_steps"].mean())))
        print(rows[-2:], flush=True)
        if n <= args.pymc_max:
            data = prepare_data(validate_cohort(cohort, required=sorted(spec.required_columns())), spec)
            model = build_model(data, priors)
            t = time.perf_counter()
            with model:
                idata = pm.sample(draws=args.draws, tune=args.tune, chains=args.chains, random_seed=1,
                                  cores=os.cpu_count(),
                                  progressbar=False, var_names=monitored_names(model),
                                  target_accept=default_target_accept(data),  # as fit() uses
                                  compute_convergence_checks=False)
            total = time.perf_counter() - t
            d = diagnose(idata, monitored_names(model))
            rows.append((n, "pymc default (compile+sample)", float("nan"), float("nan"), total,
                         d.min_ess_bulk / total, d.divergences, d.max_rhat,
                         float(idata.sample_stats["n_steps"].mean())))
            print(rows[-1], flush=True)
    print(f"\nmachine: {machine()}; {args.chains} chains x {args.draws} draws after {args.tune} tuning")
    print("| patients | sampler | compile s | sampling s | total wall s | min bulk ESS/s | divergences | max R-hat | steps/draw |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, s, c, smp, tot, ess, div, rhat, steps in rows:
        print(f"| {n} | {s} | {c:.1f} | {smp:.1f} | {tot:.1f} | {ess:.0f} | {div} | {rhat:.3f} | {steps:.1f} |")


if __name__ == "__main__":
    main()
