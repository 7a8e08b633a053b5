"""Simulation-study throughput: replicate fits per minute with `rechallenge.studies`.

One scenario (default truth, default covariates, complete data, n patients), one method
(literature priors and model), run through `rechallenge.studies.run_study` on a process
pool of long-lived workers (each compiles the nutpie model once per model structure and
reuses it). A warm-up study (4 replicates per worker) pays the compilations; the timed
study then measures the steady-state rate, which is what a long study achieves. Cohorts
of the default design occasionally lack a rare irAE organ (myocarditis, ~18% of
300-patient cohorts), which is a second model structure: each worker compiles it once.

Usage: python benchmarks/study_speed.py [--replicates 40] [--n 300] [--workers 2]
       [--draws 1000] [--tune 1000] [--chains 4]; prints a Markdown table row.
Project target: >= 120 replicate fits of 300 patients per minute.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import tempfile
import time
import warnings

from _common import machine

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicates", type=int, default=40)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args()

    from rechallenge.studies import config_from_dict, process_executor, run_study

    def config(replicates: int, seed: int):
        return config_from_dict({
            "aims": "throughput benchmark", "seed": seed, "replicates": replicates,
            "scenarios": {"base": {"n": args.n}}, "estimands": ["log_hr[tfi_le6]"],
            "methods": {"literature": {"priors": "literature"}},
            "sampler": {"draws": args.draws, "tune": args.tune, "chains": args.chains}})

    tmp = tempfile.mkdtemp(prefix="study_speed_")
    try:
        executor = process_executor(args.workers)
        t0 = time.perf_counter()
        run_study(config(4 * args.workers, 1), f"{tmp}/warmup", executor=executor, progress=False, plots=False)
        warm = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = run_study(config(args.replicates, 2), f"{tmp}/timed", executor=executor, progress=True,
                           plots=False)
        timed = time.perf_counter() - t1
        executor.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    steady = 60 * args.replicates / timed
    overall = 60 * (args.replicates + 4 * args.workers) / (warm + timed)
    unreliable = int(result.summary["n_unreliable"].sum())
    per_fit = float(result.raw["seconds"].median())
    print(f"\nmachine: {machine()}")
    print("| date | n | chains x (tune + draws) | workers | replicates | warm-up s | timed s | "
          "median s per fit (in worker) | steady fits/min | fits/min incl. compile | unreliable |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {datetime.date.today()} | {args.n} | {args.chains} x ({args.tune} + {args.draws}) | {args.workers} | "
          f"{args.replicates} | {warm:.1f} | {timed:.1f} | {per_fit:.2f} | {steady:.1f} | {overall:.1f} | "
          f"{unreliable} |")


if __name__ == "__main__":
    main()
