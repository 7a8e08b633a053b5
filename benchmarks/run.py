"""Benchmarks of `rechallenge` (run with `make bench`).

Measures wall time of the steps a user waits for, on this machine, and prints a
Markdown table to record in benchmarks/RESULTS.md with the machine it ran on.

Current steps:
- building the literature prior set (evidence table → meta-analyses → PriorSet);
- one random-effects meta-analysis (grid over tau) with 2 and with 13 studies;
- the `rechallenge priors --format json` command end to end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from _common import machine, timed




def main() -> None:
    from rechallenge.pooling import random_effects
    from rechallenge.priors import _build_literature_priors

    rng = np.random.default_rng(0)
    y13, se13 = rng.normal(-0.7, 0.5, 13), rng.uniform(0.06, 0.7, 13)
    rows = [
        ("literature prior set (21 parameters, built, not cached)",
         timed(lambda: _build_literature_priors(None, None), 3)),
        ("random_effects, 2 studies", timed(lambda: random_effects([1.2, 0.9], [0.5, 0.3]))),
        ("random_effects, 13 studies", timed(lambda: random_effects(y13, se13))),
    ]
    exe = Path(sys.executable).with_name("rechallenge")
    rows.append(("`rechallenge priors --format json` (process)",
                 timed(lambda: subprocess.run([str(exe), "priors", "--format", "json"],
                                              check=True, capture_output=True), 3)))
    print(f"machine: {machine()}")
    print("| step | median s | best s |\n|---|---|---|")
    for name, (med, best) in rows:
        print(f"| {name} | {med:.3f} | {best:.3f} |")


if __name__ == "__main__":
    main()
