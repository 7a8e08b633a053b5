"""Speed of the clinician's path: one patient's report, 10,000 summaries, the command line.

    .venv/bin/python benchmarks/predict_speed.py            # all rows
    .venv/bin/python benchmarks/predict_speed.py --repeat 7

Uses a saved fit with 4,000 draws (the demo cohort, 4 chains × 1,000 draws; made and
saved to ``build/bench_fit.nc`` on the first run, ~1-2 min) and the literature model.
Targets (design): one patient's full report numbers ≤ 20 ms after the model is loaded;
10,000 patients' summaries via ``predict_summary`` ≤ 5 s; ``rechallenge predict`` for one
patient ≤ 1.5 s end to end (a fresh process: Python start-up, imports, model load).
Prints a Markdown table with the machine; wall-clock medians and bests of repeats, and
the CPU time (user + system) of the command-line process, which is what the wall time
would be on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from _common import machine, timed

REPO = Path(__file__).resolve().parents[1]
FIT = REPO / "build" / "bench_fit.nc"
PATIENT = dict(patient_id="A", ecog=1, pfs1_months=8.0, tfi_months=7.0, liver_mets=0, nlr=2.9,
               discontinuation_reason="irae", tumour_type="nsclc", regimen_class="pd1_pdl1",
               prior_irae_grade=2, prior_irae_organ="colitis")
FLAGS = ["--ecog", "1", "--pfs1", "8", "--tfi", "7", "--liver-mets", "0", "--nlr", "2.9", "--reason", "irae",
         "--tumour", "nsclc", "--regimen", "pd1_pdl1", "--prior-irae-grade", "2", "--prior-irae-organ", "colitis"]


def ensure_fit() -> Path:
    """The 4,000-draw demo fit, fitted and saved once."""
    if not FIT.exists():
        from rechallenge.fit import fit
        from rechallenge.fitio import save
        from rechallenge.simulate import demo_cohort

        print(f"fitting the demo cohort (4 chains x 1000 draws) -> {FIT} ...", file=sys.stderr)
        save(fit(demo_cohort().data, draws=1000, tune=1000, chains=4, seed=0, progressbar=False), FIT)
    return FIT




def cli_run(extra: list[str], repeat: int) -> tuple[float, float, float]:
    """Median and best wall time, and best CPU time (children's user + sys), of the CLI."""
    # the console script users run (`rechallenge predict`), from this environment
    exe = [str(Path(sys.executable).with_name("rechallenge")), "predict", *FLAGS, *extra]
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(exe, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), min(walls), min(cpus)


def many_patients(n: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    organs = ["none", "colitis", "pneumonitis", "hepatitis", "endocrine", "dermatologic"]
    organ = rng.choice(organs, n)
    return pd.DataFrame({
        "patient_id": [f"p{i}" for i in range(n)], "ecog": rng.integers(0, 3, n).astype(float),
        "pfs1_months": np.round(rng.gamma(2, 5, n), 1), "tfi_months": np.round(rng.gamma(2, 5, n), 1),
        "liver_mets": rng.integers(0, 2, n).astype(float), "nlr": np.round(rng.lognormal(1, 0.5, n), 1),
        "discontinuation_reason": rng.choice(["progression", "irae", "clinical_decision"], n),
        "tumour_type": rng.choice(["nsclc", "melanoma", "rcc", "gastric"], n),
        "regimen_class": rng.choice(["pd1_pdl1", "ctla4_containing"], n),
        "prior_irae_grade": np.where(organ == "none", 0, rng.integers(1, 5, n)), "prior_irae_organ": organ})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--n", type=int, default=10_000, help="patients for predict_summary")
    args = parser.parse_args()
    fit_path = ensure_fit()

    from rechallenge.fitio import load_posterior
    from rechallenge.literature_model import literature_model
    from rechallenge.predict import predict_summary
    from rechallenge.report import build_reports

    t0 = time.perf_counter()
    fit = load_posterior(fit_path)
    load_s = time.perf_counter() - t0
    n_draws = fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    lit = literature_model()
    rows = [(f"load_posterior (fit, {n_draws} draws)", (load_s, load_s), "")]
    t0 = time.perf_counter()
    build_reports(fit, PATIENT)
    rows.append(("build_reports, 1 patient, fit — first call (prior draws for local_share)",
                 (time.perf_counter() - t0,) * 2, ""))
    rows.append(("build_reports, 1 patient, fit (target ≤ 0.020 s)",
                 timed(lambda: build_reports(fit, PATIENT), args.repeat * 4), ""))
    rows.append(("build_reports, 1 patient, literature model",
                 timed(lambda: build_reports(lit, PATIENT), args.repeat * 4), ""))
    big = many_patients(args.n)
    for chunk in (2000, 500):
        tracemalloc.start()
        t0 = time.perf_counter()
        predict_summary(fit, big, chunk_size=chunk)
        wall = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append((f"predict_summary, {args.n:,} patients, fit, chunk_size={chunk} (target ≤ 5 s)",
                     (wall, wall), f"peak {peak / 2**20:.0f} MiB (tracemalloc)"))
    for label, extra in (("literature model", []), ("fit", ["--model", str(fit_path)])):
        for fmt in ("text", "json"):
            med, best, cpu = cli_run(extra + ["--format", fmt], args.repeat)
            rows.append((f"`rechallenge predict` 1 patient, {label}, {fmt} (process; target ≤ 1.5 s)",
                         (med, best), f"CPU {cpu:.2f} s"))
    out = REPO / "build" / "bench_report"
    out.mkdir(parents=True, exist_ok=True)
    for fmt in ("html", "pdf"):
        med, best, cpu = cli_run(["--format", fmt, "--out", str(out / f"patient.{fmt}")], max(2, args.repeat // 2))
        rows.append((f"`rechallenge predict` 1 patient, literature model, {fmt} (process)", (med, best),
                     f"CPU {cpu:.2f} s"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {machine()}; load average at the end {load:.1f}; "
          f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print("| step | median s | best s | note |\n|---|---|---|---|")
    for name, (med, best), note in rows:
        print(f"| {name} | {med:.3f} | {best:.3f} | {note} |")


if __name__ == "__main__":
    main()
