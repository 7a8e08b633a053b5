"""Command-line pieces: ``rechallenge simulate`` and ``rechallenge study``.

Wire them into :func:`rechallenge.cli.build_parser` with
``add_simulate_parser(sub)`` and ``add_study_parser(sub)``; each sets ``func`` so that
``main`` calls :func:`run_simulate` / :func:`run_study` and turns a
:class:`~rechallenge.errors.RechallengeError` into ``error: …`` and exit code 2.

``rechallenge simulate --n 300 --seed 1 --out cohort.csv`` writes the cohort CSV
(the same seed gives the same bytes) and its true parameters (``cohort.truth.yaml``).
``rechallenge study study.yaml --out results/`` runs (or resumes) a simulation study; a
YAML file whose top level is ``sbc: {...}`` (fields of
:class:`~rechallenge.studies.sbc.SBCConfig`) runs simulation-based calibration instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import RechallengeError

__all__ = ["add_simulate_parser", "run_simulate", "add_study_parser", "run_study", "parse_missing",
           "default_truth_path"]


# --------------------------------------------------------------------------- simulate


def parse_missing(text: str | None) -> dict[str, float]:
    """``"nlr=0.2,ecog=0.1"`` -> ``{"nlr": 0.2, "ecog": 0.1}`` (RechallengeError if malformed)."""
    from ..simulate import MISSING_ALLOWED

    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            frac = float(value)
        except ValueError:
            frac = -1.0
        if not sep or name not in MISSING_ALLOWED or not 0.0 <= frac < 1.0:
            raise RechallengeError(f"--missing {part!r}: expected column=fraction with a column among "
                                   f"{list(MISSING_ALLOWED)} and a fraction in [0, 1)")
        out[name] = frac
    return out


def default_truth_path(out: Path) -> Path:
    """``cohort.csv`` -> ``cohort.truth.yaml``."""
    return out.with_suffix(".truth.yaml") if out.suffix.lower() == ".csv" else out.with_name(out.name + ".truth.yaml")


def add_simulate_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``simulate`` to an argparse subparsers object."""
    p = subparsers.add_parser("simulate", help="simulate a cohort CSV from the model (with its true parameters)")
    p.add_argument("--n", type=int, required=True, help="number of patients")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed: same file, byte for byte)")
    p.add_argument("--out", type=Path, required=True, help="cohort CSV to write")
    p.add_argument("--truth", type=Path, help="YAML of true parameters; fields left out take the defaults")
    p.add_argument("--truth-out", type=Path, help="where to write the realised truth (default: OUT.truth.yaml)")
    p.add_argument("--missing", help="fractions of missing values, e.g. nlr=0.2,ecog=0.2")
    p.add_argument("--mechanism", choices=("mcar", "mar"), default="mcar", help="missingness mechanism")
    p.add_argument("--centres", type=int, default=0, help="number of centres (0: none)")
    p.add_argument("--irae-assessed", type=float, default=0.9,
                   help="fraction of patients with a recorded irAE outcome (default 0.9)")
    p.add_argument("--from-prior", nargs="?", const="literature", default=None, metavar="PRIORS",
                   help="draw the truth from a prior set ('literature' if no value, 'vague' or a file); "
                        "--truth changes are applied on top")
    p.set_defaults(func=run_simulate)
    return p


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate a cohort and write it with its truth (both atomically)."""
    from .._resources import atomic_write_text
    from ..cohort_csv import to_csv_text
    from ..simulate import SimulationError, default_truth, simulate_cohort
    from ..truth_io import read_truth, truth_to_yaml

    if args.n < 1:
        raise RechallengeError(f"--n must be a positive integer, got {args.n}")
    if args.seed < 0:
        raise RechallengeError(f"--seed must be >= 0, got {args.seed}")
    truth_out = args.truth_out or default_truth_path(args.out)
    if truth_out.resolve() == args.out.resolve():
        raise RechallengeError("--truth-out must differ from --out")
    missing = parse_missing(args.missing)
    base = default_truth()
    if args.from_prior is not None:
        from ..modelspec import load_spec
        from ..prior_draws import draw_prior
        from ..priors import resolve_priors
        from ..simulate import IRAE_ORGANS, TUMOUR_TYPES
        from ..truth_io import truth_from_draw
        from .runner import derive_seed

        spec = load_spec("literature")
        levels = {"tumour_type": TUMOUR_TYPES, "prior_irae_organ": IRAE_ORGANS, "centre": ("all",)}
        draw = draw_prior(spec, resolve_priors(args.from_prior), levels, draws=1,
                          seed=derive_seed(args.seed, "prior"))
        base = truth_from_draw(draw, 0, spec)
    truth = read_truth(args.truth, base=base) if args.truth else base
    try:
        sim = simulate_cohort(args.n, truth=truth, seed=args.seed, missing=missing,
                              missing_mechanism=args.mechanism, n_centres=args.centres,
                              irae_assessed_fraction=args.irae_assessed)
    except SimulationError as exc:
        raise RechallengeError(str(exc)) from None
    csv_text, truth_text = to_csv_text(sim.data), truth_to_yaml(sim.truth)
    atomic_write_text(args.out, csv_text)
    atomic_write_text(truth_out, truth_text)
    events = int(sim.data["pfs2_event"].sum())
    print(f"simulated {args.n} patients ({events} PFS2 events, seed {args.seed}) -> {args.out}; "
          f"true parameters -> {truth_out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- study


def add_study_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``study`` to an argparse subparsers object."""
    p = subparsers.add_parser("study", help="run or resume a simulation study (or SBC) from a YAML file")
    p.add_argument("config", type=Path, help="study configuration (YAML; see rechallenge.studies.config)")
    p.add_argument("--out", type=Path, required=True, help="output directory (resumes what it finds there)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--scheduler", nargs="+", default=["processes"], metavar="KIND",
                   help="'processes' (default), 'serial' (this process), or 'dask ADDRESS' "
                        "(a dask.distributed scheduler, e.g. tcp://host:8786)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="do not write plots/")
    p.set_defaults(func=run_study)
    return p


def _executor(args: argparse.Namespace):
    """``(executor or None, client or None)`` from ``--scheduler`` / ``--workers``."""
    kind, *rest = args.scheduler
    if args.workers < 1:
        raise RechallengeError(f"--workers must be >= 1, got {args.workers}")
    if kind == "processes" and not rest:
        return None, None
    if kind == "serial" and not rest:
        from .runner import SerialExecutor

        return SerialExecutor(), None
    if kind == "dask" and len(rest) == 1:
        from .runner import dask_executor

        try:
            return dask_executor(rest[0])
        except OSError as exc:
            raise RechallengeError(f"cannot reach the dask scheduler at {rest[0]}: {exc}") from None
    raise RechallengeError(f"--scheduler {' '.join(args.scheduler)!r}: use 'processes', 'serial' or 'dask ADDRESS'")


def _print_study(result) -> None:
    import pandas as pd

    df = result.table()
    show = pd.DataFrame({
        "scenario": df["scenario"], "method": df["method"], "estimand": df["estimand"],
        "reps": df["n"].astype("Int64"), "truth": df["true_value"].round(3),
        "bias (mcse)": [f"{b:+.3f} ({m:.3f})" for b, m in zip(df["bias"], df["bias_mcse"])],
        "empSE": df["empse"].round(3), "modSE": df["modse"].round(3), "RMSE": df["rmse"].round(3),
        "cov95 (mcse)": [f"{c:.3f} ({m:.3f})" for c, m in zip(df["coverage95"], df["coverage_mcse95"])],
        "width95": df["width95"].round(3), "power": df["power"].round(3),
        "unreliable": df["n_unreliable"], "failed": df["n_failed"]})
    print(show.to_string(index=False))
    if result.assurance is not None:
        ss = result.config.sample_size
        print(f"\nSample size: P({ss.level:.0%} CrI of {ss.estimand} excludes 0), target {ss.target:.0%}")
        print(result.assurance.to_string(index=False))
        print("smallest n reaching the target: "
              + (str(result.smallest_n) if result.smallest_n is not None else "none in the grid"))
        verdicts = dict(zip(result.assurance["n"], result.assurance["verdict"]))
        if result.smallest_n is not None and verdicts[result.smallest_n] == "unclear":
            print("  (its estimate is within 2 Monte Carlo SEs of the target: run more replicates "
                  "before relying on it)")


def _run_sbc_file(raw: dict, args: argparse.Namespace, executor) -> int:
    from dataclasses import fields

    from .sbc import SBCConfig, run_sbc

    allowed = {f.name for f in fields(SBCConfig)} - {"covariates"}
    d = raw.get("sbc") or {}
    if not isinstance(d, dict) or set(d) - allowed:
        raise RechallengeError(f"{args.config}: sbc: expected a mapping with keys among {sorted(allowed)}")
    result = run_sbc(SBCConfig(**d), args.out, executor=executor, workers=args.workers,
                     progress=not args.no_progress, plots=not args.no_plots)
    print(result.summary.to_string(index=False))
    print(f"\nSBC {'passed' if result.passed else 'FLAGGED'}: {len(result.ranks.replicate)} replicates, "
          f"L = {result.L}, {result.n_failed} failed, {result.n_unreliable} unreliable fits "
          "(Holm-adjusted simultaneous ECDF tests)")
    return 0


def run_study(args: argparse.Namespace) -> int:
    """Run or resume the study described by ``args.config`` into ``args.out``."""
    import yaml

    from .config import load_config
    from .study import run_study as _run

    try:
        raw = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RechallengeError(f"cannot read study configuration {args.config}: "
                               f"{' '.join(str(exc).split())}") from None
    config = None if isinstance(raw, dict) and "sbc" in raw else load_config(args.config)
    executor, client = _executor(args)
    try:
        if config is None:
            return _run_sbc_file(raw, args, executor)
        result = _run(config, args.out, executor=executor, workers=args.workers,
                      progress=not args.no_progress, plots=not args.no_plots)
    finally:
        if client is not None:
            client.close()
    _print_study(result)
    total = int(result.summary["n_replicates"].sum())
    if result.n_failed:
        print(f"warning: {result.n_failed} of {total} fits failed; first error: {result.first_error}",
              file=sys.stderr)
    print(f"\nResults in {args.out} (raw.nc, summary.nc, summary.csv"
          + (", assurance.csv" if result.assurance is not None else "") + ", plots/)", file=sys.stderr)
    return 1 if total and result.n_failed == total else 0
