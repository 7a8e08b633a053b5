"""Fit-speed benchmark: nutpie vs PyMC's default NUTS on the default joint model.

For each cohort size (simulated, 20% NLR missing in none: complete covariates) and
each sampler, in one process: model build, compile (nutpie: numba compile; PyMC: the
first call's compile is inside `pm.sample`, reported as total), sampling wall time,
bulk ESS per second of the slowest parameter, divergences. Also a refit of new data of
the same structure with the compiled nutpie model (what simulation studies do).

Usage: python benchmarks/fit_speed.py [N ...] [--pymc-max N]
(default sizes 300 3000 30000; PyMC's sampler only up to --pymc-max, default 30000).
Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

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
    import nutpie
    import pymc as pm

    from rechallenge.cohort import validate_cohort
    from rechallenge.fit import TARGET_ACCEPT, diagnose, monitored_names
    from rechallenge.model import build_model
    from rechallenge.model_data import prepare_data
    from rechallenge.modelspec import load_spec
    from rechallenge.priors import literature_priors
    from rechallenge.simulate import simulate_cohort
    print(f"imports {time.perf_counter() - t0:.1f} s")
    spec, priors = load_spec(), literature_priors()
    rows = []
    for n in args.sizes:
        data = prepare_data(validate_cohort(simulate_cohort(n, seed=n).data,
                                            required=sorted(spec.required_columns())), spec)
        t = time.perf_counter()
        model = build_model(data, priors)
        build = time.perf_counter() - t
        names = [v.name for v in model.free_RVs] + [d.name for d in model.deterministics
                                                    if d.name not in ("ll_pfs2", "ll_irae")]
        t = time.perf_counter()
        compiled = nutpie.compile_pymc_model(model, var_names=names)
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        idata = nutpie.sample(compiled, draws=args.draws, tune=args.tune, chains=args.chains, seed=1,
                              progress_bar=False, cores=os.cpu_count(), target_accept=TARGET_ACCEPT,
                              low_rank_modified_mass_matrix=n >= 5000)
        sample_s = time.perf_counter() - t
        d = diagnose(idata, monitored_names(model))
        rows.append((n, "nutpie", build, compile_s, sample_s, d.min_ess_bulk / sample_s, d.divergences, d.max_rhat))
        new = prepare_data(validate_cohort(simulate_cohort(n, seed=n + 1).data,
                                           required=sorted(spec.required_columns())), spec)
        t = time.perf_counter()
        nutpie.sample(compiled.with_data(time=new.time, event=new.event, x_pfs2=new.x_pfs2,
                                         x_irae=new.x_irae, y_irae_onehot=new.y_irae_onehot, tumour_idx=new.tumour_idx,
                                         organ_idx=new.organ_idx, rows_patient=new.rows_patient),
                      draws=args.draws, tune=args.tune, chains=args.chains, seed=2, progress_bar=False,
                      cores=os.cpu_count(), target_accept=TARGET_ACCEPT, low_rank_modified_mass_matrix=n >= 5000)
        rows.append((n, "nutpie refit (compiled, new data)", 0.0, 0.0, time.perf_counter() - t, float("nan"), -1, float("nan")))
        if n <= args.pymc_max:
            t = time.perf_counter()
            with model:
                idata = pm.sample(draws=args.draws, tune=args.tune, chains=args.chains, random_seed=1,
                                  progressbar=False, var_names=names, target_accept=TARGET_ACCEPT,
                                  compute_convergence_checks=False)
            total = time.perf_counter() - t
            d = diagnose(idata, monitored_names(model))
            rows.append((n, "pymc (compile+sample)", build, float("nan"), total, d.min_ess_bulk / total,
                         d.divergences, d.max_rhat))
        print(rows[-3:] if n <= args.pymc_max else rows[-2:], flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    print(f"\nmachine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{args.chains} chains x {args.draws} draws after {args.tune} tuning")
    print("| patients | sampler | build s | compile s | sampling s | min bulk ESS/s | divergences | max R-hat |")
    print("|---|---|---|---|---|---|---|---|")
    for n, s, b, c, smp, ess, div, rhat in rows:
        print(f"| {n} | {s} | {b:.1f} | {c:.1f} | {smp:.1f} | {ess:.0f} | {div if div >= 0 else '-'} | {rhat:.3f} |")


if __name__ == "__main__":
    main()
