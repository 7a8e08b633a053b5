"""Build the model's priors from the specification and the evidence table.

The *literature* prior of a parameter is made in four steps:

1. every ``used`` evidence row for the parameter becomes a normal on the modelling
   scale, with the specification's discounts (:func:`rechallenge.evidence.row_effect`);
2. the rows are pooled by a Bayesian random-effects meta-analysis and the prior is the
   meta-analytic-predictive (MAP) distribution of the effect in a *new* cohort
   (:func:`rechallenge.pooling.random_effects`; one study: that study's estimate);
3. optionally a vague component is mixed in (robust MAP, Schmidli et al. 2014);
4. the prior effective sample size is computed (ELIR by default, or moment).

A parameter without usable evidence takes the ``judgement`` prior written in the
specification, with the direction-only rows that motivate it as provenance. The
*vague* prior set gives every parameter the weak prior of the specification's
``vague`` section, for sensitivity analyses.

References
----------
Neuenschwander B, Capkun-Niggli G, Branson M, Spiegelhalter DJ (2010). Summarizing
historical information on controls in clinical trials. Clin Trials 7:5–18.
Schmidli H, Gsteiger S, Roychoudhury S, O'Hagan A, Spiegelhalter D, Neuenschwander B
(2014). Robust meta-analytic-predictive priors in clinical trials with historical
control information. Biometrics 70:1023–32.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from scipy.special import expit

from . import evidence as ev
from ._resources import read_yaml, resource_path
from .errors import RechallengeError, SpecError
from .evidence_table import default_evidence_path, outcome_of, read_evidence
from .mixture import NormalMixture
from .pooling import MetaAnalysis, effective_sample_size, random_effects, robust_mixture
from .priorset import OUTCOMES, TRANSFORMS, PriorEntry, PriorSet

_DEFAULT_ENDPOINT = {"pfs2": "pfs2", "irae": "irae_any"}
_SEED_SHORT = {"000_56e2630f9d1661c4.txt": "000", "002_cfd7c1ddf5a61129.txt": "002"}


def default_spec_path() -> Path:
    """Path of the bundled ``priors/default.yaml``."""
    return resource_path("priors", "default.yaml")


def load_prior_spec(path: str | Path | None = None) -> dict[str, Any]:
    """Read and check a prior specification (see ``priors/default.yaml``)."""
    path = Path(path) if path is not None else default_spec_path()
    spec = read_yaml(path, "prior specification", SpecError)
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    for key in ("discounts", "conversions", "pooling", "robust", "parameters", "vague"):
        if key not in spec:
            raise SpecError(f"{path}: missing section {key!r}")
    for outcome, params in spec["parameters"].items():
        if outcome not in OUTCOMES:
            raise SpecError(f"{path}: unknown outcome {outcome!r} (expected {OUTCOMES})")
        for name, p in params.items():
            if p.get("measure") not in TRANSFORMS:
                raise SpecError(f"{path}: {outcome}.{name}: measure {p.get('measure')!r} "
                                f"not in {sorted(TRANSFORMS)}")
    for name, factor in spec["discounts"].items():
        if not (isinstance(factor, (int, float)) and factor >= 1):
            raise SpecError(f"{path}: discount {name!r} must be a number >= 1 (a variance "
                            f"inflation factor), got {factor!r}")
    return spec


def _source_label(row: Mapping[str, Any]) -> str:
    seed = _SEED_SHORT.get(row["seed"], row["seed"])
    return f"{row['first_author']} (ref {row['ref']}, seed {seed})"


def _ess_unit_sd(measure: str, centre: float, spec: Mapping[str, Any]) -> tuple[float, str] | None:
    """Unit-information sd for the ESS (see :func:`rechallenge.pooling.effective_sample_size`).

    log HR, 1:1 allocation: ``var ≈ 4/d`` → unit sd 2, ESS in events. log OR, two equal
    groups with event probability ``p``: ``var ≈ 4/(N p(1−p))`` → ESS in patients. logit
    probability: ``var ≈ 1/(N p(1−p))``. log median: ``var ≈ 1/d``.
    """
    p_ref = float(spec.get("ess", {}).get("or_reference_probability", 0.3))
    if measure == "HR":
        return 2.0, "events"
    if measure == "OR":
        return 2.0 / math.sqrt(p_ref * (1 - p_ref)), "patients"
    if measure == "probability":
        p = float(expit(centre))
        return 1.0 / math.sqrt(p * (1 - p)), "patients"
    if measure == "median_months":
        return 1.0, "events"
    return None


def _parameter_rows(table: pd.DataFrame, outcome: str, name: str, status: str) -> pd.DataFrame:
    mask = ((table["status"] == status) & (table["parameter"] == name)
            & (table["endpoint"].map(outcome_of) == outcome))
    return table[mask]


def _judgement_entry(outcome: str, name: str, p: Mapping[str, Any],
                     direction_rows: pd.DataFrame) -> PriorEntry:
    j = p["judgement"]
    common = dict(parameter=name, outcome=outcome, measure=p["measure"], scale=p["scale"],
                  method="judgement", rows=tuple(direction_rows["row_id"]),
                  sources=tuple(_source_label(r) for r in direction_rows.to_dict("records"))
                  + ("judgement (priors/default.yaml)",),
                  adverse_level=p.get("adverse_level"),
                  note="No usable comparative estimate; prior set by judgement"
                       + (" with the direction of the listed rows." if len(direction_rows) else "."))
    if p["measure"] == "group_sd":
        return PriorEntry(halfnormal_scale=float(j["halfnormal_scale"]), **common)
    return PriorEntry(distribution=NormalMixture.normal(math.log(j["median"]), float(j["sd_log"])),
                      **common)


def parameter_effects(spec: Mapping[str, Any], rows: pd.DataFrame, outcome: str, name: str, *,
                      discounts: Mapping[str, float] | None = None) -> list[ev.Effect]:
    """Discounted effects of the given evidence rows for one parameter.

    ``discounts`` defaults to the specification's factors (pass all-ones to see the
    undiscounted estimates).
    """
    p = spec["parameters"][outcome][name]
    endpoint = p.get("endpoint", _DEFAULT_ENDPOINT[outcome])
    conv = spec["conversions"]
    try:
        return [ev.row_effect(r, parameter_endpoint=endpoint,
                              discounts=discounts if discounts is not None else spec["discounts"],
                              events_fraction=conv["events_fraction"],
                              rate_pseudo_n=conv["rate_pseudo_n"]) for r in rows.to_dict("records")]
    except (ValueError, KeyError) as exc:
        raise RechallengeError(f"{outcome}.{name}: {exc}") from None


def used_rows(table: pd.DataFrame, outcome: str, name: str) -> pd.DataFrame:
    """The ``used`` evidence rows of one parameter."""
    return _parameter_rows(table, outcome, name, "used")


def build_prior_set(spec: Mapping[str, Any], table: pd.DataFrame, *, name: str = "literature",
                    apply_discounts: bool = True, robust_weight: float | None = None,
                    ) -> tuple[PriorSet, dict[tuple[str, str], MetaAnalysis]]:
    """Literature priors from a specification and a validated evidence table.

    Parameters
    ----------
    spec
        Parsed prior specification (:func:`load_prior_spec`).
    table
        Validated evidence table (:func:`rechallenge.evidence_table.read_evidence`).
    apply_discounts
        ``False`` sets every discount factor to 1 (for sensitivity analyses).
    robust_weight
        Overrides the robust-mixture weight of every ratio parameter.

    Returns
    -------
    (PriorSet, dict)
        The prior set, and the meta-analysis behind each pooled entry.
    """
    discounts = {k: (float(v) if apply_discounts else 1.0) for k, v in spec["discounts"].items()}
    pool, robust = spec["pooling"], spec["robust"]
    entries: dict[tuple[str, str], PriorEntry | None] = {}  # specification order
    analyses: dict[tuple[str, str], MetaAnalysis] = {}
    derived: list[tuple[str, str, Mapping[str, Any]]] = []
    for outcome, params in spec["parameters"].items():
        for pname, p in params.items():
            used = _parameter_rows(table, outcome, pname, "used")
            direction = _parameter_rows(table, outcome, pname, "direction_only")
            if p["measure"] == "group_sd" and "derive" in p:
                derived.append((outcome, pname, p))
                entries[(outcome, pname)] = None  # filled once its sources exist
                continue
            if used.empty:
                if "judgement" not in p:
                    raise SpecError(f"{outcome}.{pname}: no used evidence rows and no judgement prior")
                entries[(outcome, pname)] = _judgement_entry(outcome, pname, p, direction)
                continue
            effects = parameter_effects(spec, used, outcome, pname, discounts=discounts)
            records = used.to_dict("records")
            ma = random_effects([e.mean for e in effects], [e.se for e in effects],
                                labels=[e.row_id for e in effects],
                                tau_prior_scale=p.get("tau_scale", pool["tau_scale"]),
                                mu_prior_mean=pool["mu_prior_mean"], mu_prior_sd=pool["mu_prior_sd"])
            analyses[(outcome, pname)] = ma
            is_ratio = p["measure"] in ev.RATIO_MEASURES
            weight = p.get("robust_weight", robust["weight"])
            if robust_weight is not None and is_ratio:
                weight = robust_weight
            dist = ma.predictive
            if weight > 0:
                dist = robust_mixture(dist, weight, vague_mean=0.0 if is_ratio else dist.mean,
                                      vague_sd=robust["vague_sd"])
            unit = _ess_unit_sd(p["measure"], dist.median, spec)
            ess = (effective_sample_size(dist, unit_sd=unit[0], method=spec.get("ess", {}).get("method", "elir"))
                   if unit else None)
            entries[(outcome, pname)] = PriorEntry(
                parameter=pname, outcome=outcome, measure=p["measure"], scale=p["scale"],
                distribution=dist, method="single_study" if len(effects) == 1 else "meta_analytic_predictive",
                rows=tuple(e.row_id for e in effects),
                sources=tuple(_source_label(r) for r in records),
                discounts={e.row_id: e.discounts for e in effects},
                robust_weight=float(weight), n_studies=len(effects), tau_median=ma.tau_median,
                ess=ess, ess_unit=unit[1] if unit else None, adverse_level=p.get("adverse_level"),
                note=p.get("note", ""))
    for outcome, pname, p in derived:
        entries[(outcome, pname)] = _derived_entry(outcome, pname, p, entries, analyses)
    return (PriorSet(name=name, entries=tuple(entries.values()),  # type: ignore[arg-type]
                     source="priors/default.yaml + priors/evidence.csv"), analyses)


def _derived_entry(outcome: str, pname: str, p: Mapping[str, Any],
                   entries: Mapping[tuple[str, str], PriorEntry | None],
                   analyses: Mapping[tuple[str, str], MetaAnalysis]) -> PriorEntry:
    """``tau_of_baseline_median_times_shape``: half-normal scale = τ̂(log median) · k̃.

    A shift ``d`` of a Weibull log-hazard intercept moves the log median by ``−d/k``, so
    an sd ``τ`` of log medians across cohorts corresponds to ``k τ`` on the log-hazard scale.
    """
    if p["derive"] != "tau_of_baseline_median_times_shape":
        raise SpecError(f"{outcome}.{pname}: unknown derive rule {p['derive']!r}")
    ma = analyses.get(("pfs2", "baseline_median"))
    shape = entries.get(("pfs2", "weibull_shape"))
    if ma is None or ma.tau_median is None or shape is None:
        raise SpecError(f"{outcome}.{pname}: needs pooled pfs2.baseline_median and pfs2.weibull_shape")
    k = math.exp(shape.distribution.median)  # type: ignore[union-attr]
    return PriorEntry(parameter=pname, outcome=outcome, measure="group_sd", scale=p["scale"],
                      halfnormal_scale=ma.tau_median * k, method="derived",
                      rows=ma.labels, sources=("derived from pfs2.baseline_median and pfs2.weibull_shape",),
                      n_studies=ma.n_studies, tau_median=ma.tau_median,
                      note=f"scale = tau(log median) {ma.tau_median:.3f} x shape {k:.3f}")


_LITERATURE_CACHE: dict[tuple, PriorSet] = {}


def _file_key(path: Path) -> tuple:
    """Identity of a file's current content (path, size, modification time)."""
    try:
        st = path.stat()
    except OSError:
        return (str(path),)
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def literature_priors(spec_path: str | Path | None = None,
                      evidence_path: str | Path | None = None) -> PriorSet:
    """The literature prior set from ``priors/default.yaml`` and ``priors/evidence.csv``.

    Building it takes about 2 s (meta-analyses and mixture compression), so it is
    built once per process and per content of the two files (a changed file is rebuilt);
    PriorSets are immutable, so sharing one is safe.
    """
    key = (_file_key(Path(spec_path) if spec_path is not None else default_spec_path()),
           _file_key(Path(evidence_path) if evidence_path is not None else default_evidence_path()))
    if key not in _LITERATURE_CACHE:
        _LITERATURE_CACHE[key] = _build_literature_priors(spec_path, evidence_path)
    return _LITERATURE_CACHE[key]


def _build_literature_priors(spec_path: str | Path | None, evidence_path: str | Path | None) -> PriorSet:
    spec = load_prior_spec(spec_path)
    table = read_evidence(evidence_path, known_parameters=_all_parameters(spec),
                          discount_names=spec["discounts"])
    return build_prior_set(spec, table)[0]


def vague_priors(spec_path: str | Path | None = None) -> PriorSet:
    """Weak priors for every parameter (the specification's ``vague`` section)."""
    spec = load_prior_spec(spec_path)
    entries = []
    for outcome, params in spec["parameters"].items():
        for pname, p in params.items():
            v = spec["vague"][p["measure"]]
            common = dict(parameter=pname, outcome=outcome, measure=p["measure"], scale=p["scale"],
                          method="vague", sources=("vague (priors/default.yaml)",),
                          adverse_level=p.get("adverse_level"))
            if p["measure"] == "group_sd":
                entries.append(PriorEntry(halfnormal_scale=float(v["halfnormal_scale"]), **common))
            elif p["measure"] == "probability":
                centre = math.log(v["median"] / (1 - v["median"]))
                entries.append(PriorEntry(distribution=NormalMixture.normal(centre, v["sd_logit"]), **common))
            else:
                entries.append(PriorEntry(distribution=NormalMixture.normal(math.log(v["median"]), v["sd_log"]),
                                          **common))
    return PriorSet(name="vague", entries=tuple(entries), source="priors/default.yaml (vague)")


def _all_parameters(spec: Mapping[str, Any]) -> set[str]:
    return {name for params in spec["parameters"].values() for name in params}


def resolve_priors(priors: str | Path | PriorSet) -> PriorSet:
    """``"literature"``, ``"vague"``, a :class:`PriorSet`, or a saved prior-set file."""
    if isinstance(priors, PriorSet):
        return priors
    if str(priors) == "literature":
        return literature_priors()
    if str(priors) == "vague":
        return vague_priors()
    path = Path(priors)
    if not path.exists():
        raise SpecError(f"priors {str(priors)!r}: not 'literature', 'vague' or an existing file")
    return PriorSet.load(path)
