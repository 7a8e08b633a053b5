"""The ``rechallenge`` command line.

``rechallenge priors``    the model's priors (table, JSON or YAML), optionally saved.
``rechallenge evidence``  the evidence rows behind the priors, with their discounts.
``rechallenge fit``       fit the model to a cohort CSV and save the posterior (NetCDF).
``rechallenge predict``   one patient (flags) or many (CSV): PFS2 and irAE recurrence with intervals.
``rechallenge simulate``  a synthetic cohort from the model (same seed, same bytes) and its true parameters.
``rechallenge study``     a simulation study (ADEMP) or simulation-based calibration from a YAML config.
``rechallenge serve``     the clinician's web page (localhost), from a saved fit or the literature model.

User errors (a bad file, an unknown option value) print one line starting with
``error:`` on standard error and exit with code 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import RechallengeError


def _format_number(x: float) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def priors_table(summaries: list[dict]) -> str:
    """Readable fixed-width table of prior summaries (one line per parameter)."""
    header = ("outcome", "parameter", "measure", "median", "95% interval", "studies",
              "method", "ESS", "one unit is")
    lines = []
    for s in summaries:
        ess = "-" if s["ess"] is None else f"{s['ess']:.0f} {s['ess_unit']}"
        lines.append((s["outcome"], s["parameter"], s["measure"], _format_number(s["median"]),
                      f"{_format_number(s['lower95'])} to {_format_number(s['upper95'])}",
                      str(s["n_studies"]), s["method"], ess, s["scale"]))
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(header)]
    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(r) for r in lines)])


def _cmd_priors(args: argparse.Namespace) -> int:
    from .priors import literature_priors, resolve_priors
    if args.spec or args.evidence:
        if args.set != "literature":
            raise RechallengeError("--spec/--evidence apply to the literature prior set only")
        prior_set = literature_priors(args.spec, args.evidence)
    else:
        prior_set = resolve_priors(args.set)
    if args.out:
        prior_set.save(args.out)
        print(f"prior set {prior_set.name!r} written to {args.out} (sha256 {prior_set.hash()[:12]})",
              file=sys.stderr)
    summaries = [e.summary() for e in prior_set]
    if args.format == "json":
        print(json.dumps(summaries, indent=2))
    elif args.format == "yaml":
        print(prior_set.to_yaml(), end="")
    else:
        print(f"Prior set: {prior_set.name}   (ratios: median and 95% interval of the prior; "
              f"'one unit is' says what the parameter compares)")
        print(priors_table(summaries))
    return 0


def _cmd_evidence(args: argparse.Namespace) -> int:
    import pandas as pd

    from .evidence_table import outcome_of, read_evidence
    from .priors import _all_parameters, load_prior_spec, parameter_effects
    spec = load_prior_spec(args.spec)
    table = read_evidence(args.evidence, known_parameters=_all_parameters(spec),
                          discount_names=spec["discounts"])
    if args.parameter:
        table = table[table["parameter"] == args.parameter]
        if table.empty:
            raise RechallengeError(f"no evidence rows for parameter {args.parameter!r}")
    if not args.all:
        table = table[table["status"] != "excluded"]
    out = []
    for r in table.to_dict("records"):
        line = {"row_id": r["row_id"], "status": r["status"], "parameter": r["parameter"],
                "source": f"{r['first_author']} (ref {r['ref']})", "measure": r["measure"],
                "estimate": r["estimate"], "cohort": r["cohort_id"]}
        if r["status"] == "used":
            (e,) = parameter_effects(spec, pd.DataFrame([r]), outcome_of(r["endpoint"]),
                                     r["parameter"])
            line.update(mean=round(e.mean, 3), se=round(e.se, 3),
                        discounts="; ".join(e.discounts) or "-")
        out.append(line)
    if args.format == "json":
        print(json.dumps(out, indent=2, default=str))
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 20,
                               "display.max_colwidth", 40):
            print(pd.DataFrame(out).fillna("").to_string(index=False))
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    import warnings

    from .cohort import read_cohort
    from .modelspec import load_spec
    from .priors import resolve_priors

    from .fit import check_target_accept

    if args.out.suffix != ".nc":
        raise RechallengeError(f"--out {args.out}: a fit is saved as NetCDF; use a .nc file name")
    check_target_accept(args.target_accept)
    spec = load_spec(args.spec)
    if str(args.cohort) == "demo":
        path = Path(__file__).parent / "data" / "demo_cohort_synthetic.csv"
        print("Using the bundled SYNTHETIC demo cohort (300 simulated patients, not real data).",
              file=sys.stderr)
    else:
        path = args.cohort
    # Validate everything cheap before importing PyMC and compiling.
    cohort = read_cohort(path, required=sorted(spec.required_columns()), extra=spec.extra_types)
    priors = resolve_priors(args.priors)
    print(f"Fitting {cohort.n_patients} patients ({cohort.n_events} PFS2 events) with the "
          f"{spec.name!r} specification and {priors.name!r} priors; compiling the model takes "
          "a while the first time ...", file=sys.stderr)
    from .fit import UnreliableFitWarning, fit
    from .fitio import save
    from .summary import fit_report

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreliableFitWarning)
        idata = fit(cohort, spec, priors, sampler=args.sampler, draws=args.draws, tune=args.tune,
                    chains=args.chains, seed=args.seed, progressbar=not args.no_progress,
                    target_accept=args.target_accept)
    for w in caught:
        if issubclass(w.category, UnreliableFitWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    save(idata, args.out)
    print(fit_report(idata))
    print(f"\nSaved to {args.out}", file=sys.stderr)
    if args.strict and not int(idata.attrs["reliable"]):
        return 3
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rechallenge",
        description="Bayesian prognostic model for immune-checkpoint-inhibitor rechallenge.")
    parser.add_argument("--version", action="version", version=f"rechallenge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("priors", help="show (and optionally save) the model's priors")
    p.add_argument("--set", default="literature",
                   help="'literature' (default), 'vague', or a saved prior-set file (.yaml/.json)")
    p.add_argument("--format", choices=("table", "json", "yaml"), default="table")
    p.add_argument("--out", type=Path, help="also save the full prior set (.yaml or .json)")
    p.add_argument("--spec", type=Path, help="prior specification (default: priors/default.yaml)")
    p.add_argument("--evidence", type=Path, help="evidence table (default: priors/evidence.csv)")
    p.set_defaults(func=_cmd_priors)

    e = sub.add_parser("evidence", help="list the evidence rows and their discounts")
    e.add_argument("--parameter", help="only rows for this parameter (e.g. tfi_le6)")
    e.add_argument("--all", action="store_true", help="include excluded rows")
    e.add_argument("--format", choices=("table", "json"), default="table")
    e.add_argument("--spec", type=Path)
    e.add_argument("--evidence", type=Path)
    e.set_defaults(func=_cmd_evidence)

    f = sub.add_parser("fit", help="fit the model to a cohort CSV and save the posterior")
    f.add_argument("cohort", help="cohort CSV (see README: cohort contract), or 'demo' for the "
                                  "bundled synthetic demo cohort")
    f.add_argument("--out", type=Path, required=True, help="output file (.nc, NetCDF)")
    f.add_argument("--spec", default="literature", help="model specification YAML (default: literature)")
    f.add_argument("--priors", default="literature", help="'literature', 'vague' or a prior-set file")
    f.add_argument("--sampler", choices=("nutpie", "pymc", "numpyro"), default="nutpie")
    f.add_argument("--draws", type=int, default=1000)
    f.add_argument("--tune", type=int, default=1000)
    f.add_argument("--chains", type=int, default=4)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--target-accept", type=float, default=None,
                   help="NUTS step-size adaptation target in (0, 1) (default: 0.8 when nutpie "
                        "samples the fused density, i.e. Weibull without cure fraction and complete "
                        "covariates; otherwise 0.9, or 0.95 when covariates are imputed or a group "
                        "effect is centred)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.add_argument("--strict", action="store_true", help="exit with code 3 when the fit is unreliable")
    f.set_defaults(func=_cmd_fit)

    from .predict_cli import add_predict_parser
    from .studies.cli import add_simulate_parser, add_study_parser
    from .web import add_serve_parser

    add_predict_parser(sub)
    add_serve_parser(sub)
    add_simulate_parser(sub)
    add_study_parser(sub)
    return parser


def console_main() -> int:
    """Entry point of the ``rechallenge`` console script (a process of its own).

    ``rechallenge predict`` answers a clinician in about a second, so its process does not
    import dask, which xarray would otherwise load for nothing
    (:func:`rechallenge.predict_cli.without_dask`).
    """
    if sys.argv[1:2] == ["predict"]:
        from .predict_cli import without_dask

        without_dask()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RechallengeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
