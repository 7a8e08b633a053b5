"""Configuration of a simulation study, in the ADEMP structure of Morris et al. (2019).

A study is described by its **A**\\ ims (free text), **D**\\ ata-generating mechanisms
(:class:`Scenario`: cohort size, changes to the true parameters, missingness, centres,
covariate distributions, or a *design prior* from which the truth is drawn afresh for
every replicate), **E**\\ stimands (:class:`Estimand`, e.g. ``log_hr[tfi_le6]``),
**M**\\ ethods (:class:`Method`: prior set, model specification, sampler settings) and
**P**\\ erformance measures (:mod:`rechallenge.studies.performance`). A YAML file::

    aims: How well does the literature model estimate the TFI hazard ratio at n = 300?
    seed: 2026
    replicates: 200
    scenarios:
      base: {n: 300}
      null_tfi: {n: 300, truth: {beta: {tfi_le6: 0.0}}, missing: {nlr: 0.2}}
    estimands: ["log_hr[tfi_le6]", "log_or[regimen_ctla4]"]
    methods:
      literature: {priors: literature}
      vague: {priors: vague}
      robust: {priors: robust, robust_weight: 0.5}
    sampler: {draws: 1000, tune: 1000, chains: 4}   # defaults for every method
    performance: {exclude_unreliable: false}
    sample_size: {scenario: base, n: [50, 100, 200, 400], estimand: "log_hr[tfi_le6]",
                  method: literature, target: 0.8}   # nested: true (default) = the first n
                                                     # patients of one cohort per replicate

Method priors: ``literature`` (the literature prior set), ``vague`` and ``local_only``
(the vague set: an analysis of the local data alone), ``robust`` (the literature prior
set rebuilt with the robust-mixture weight ``robust_weight`` on every ratio parameter,
:func:`rechallenge.priors.build_prior_set`), or the path of a saved prior set.

Reference: Morris TP, White IR, Crowther MJ (2019). Using simulation studies to evaluate
statistical methods. *Stat Med* 38:2074–2102.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping


from .._resources import read_yaml
from ..errors import RechallengeError

__all__ = ["StudyConfigError", "Estimand", "Scenario", "Method", "SampleSize", "StudyConfig",
           "parse_estimand", "load_config", "config_from_dict", "PRIOR_CHOICES"]

PRIOR_CHOICES = ("literature", "vague", "robust", "local_only")
SAMPLER_KEYS = ("sampler", "draws", "tune", "chains")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ESTIMAND = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\[\]]+)\])?$")
#: Variables of a fit's posterior that can be estimands; vectors need a [label].
VECTOR_VARS = {"log_hr": "pfs2_covariate", "log_or": "irae_covariate",
               "tumour_effect": "tumour_type", "tumour_effect_irae": "tumour_type",
               "organ_effect": "prior_irae_organ", "centre_effect": "centre"}
SCALAR_VARS = ("log_median", "log_shape", "logit_cure", "sigma_tumour", "sigma_centre",
               "sigma_tumour_irae", "sigma_organ", "irae_a_any", "irae_b_severe",
               "irae_p_any_ref", "irae_p_grade3plus_ref")


class StudyConfigError(RechallengeError):
    """A study configuration is malformed (the message names the key)."""


@dataclass(frozen=True)
class Estimand:
    """A scalar model quantity: ``var`` or ``var[label]`` (label along the var's dim)."""

    text: str
    var: str
    label: str | None = None

    @property
    def dim(self) -> str | None:
        return VECTOR_VARS.get(self.var)


def parse_estimand(text: str) -> Estimand:
    """Parse ``"log_hr[tfi_le6]"`` or ``"log_median"`` (unknown variables are an error)."""
    m = _ESTIMAND.match(str(text).strip())
    if not m:
        raise StudyConfigError(f"estimand {text!r}: expected 'variable' or 'variable[label]'")
    var, label = m.group(1), m.group(2)
    if var in VECTOR_VARS:
        if label is None:
            raise StudyConfigError(f"estimand {text!r}: {var} is a vector; say which element, "
                                   f"e.g. {var}[...] along {VECTOR_VARS[var]}")
    elif var in SCALAR_VARS:
        if label is not None:
            raise StudyConfigError(f"estimand {text!r}: {var} is a scalar, drop [{label}]")
    else:
        raise StudyConfigError(f"estimand {text!r}: unknown variable {var!r} (known: "
                               f"{sorted(VECTOR_VARS) + list(SCALAR_VARS)})")
    return Estimand(text=f"{var}[{label}]" if label else var, var=var, label=label)


@dataclass(frozen=True)
class Scenario:
    """A data-generating mechanism (see :func:`rechallenge.simulate.simulate_cohort`).

    ``truth`` holds changes to :func:`rechallenge.simulate.default_truth` (merged key by
    key); with ``design_prior`` (``literature``/``vague``/a prior-set file) the truth of
    every replicate is drawn from that prior instead, then ``truth`` is applied on top
    (Bayesian assurance: O'Hagan & Stevens 2001, *Med Decis Making* 21:219).
    ``covariates`` holds changes to :class:`rechallenge.simulate.CovariateSpec`.
    """

    name: str
    n: int
    truth: Mapping[str, Any] = field(default_factory=dict)
    design_prior: str | None = None
    missing: Mapping[str, float] = field(default_factory=dict)
    mechanism: str = "mcar"
    centres: int = 0
    irae_assessed_fraction: float = 0.9
    covariates: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """An analysis: prior set, model specification and sampler settings.

    The sampler defaults are those of :func:`rechallenge.fit.fit` (4 chains × 1,000 draws
    after 1,000 tuning), so that replicates pass the same convergence gate. Measured on 24
    cohorts of 300 patients (2026-11-22): 24 of 24 fits reliable, against 21 of 24 with
    300 tuning and 1,000 draws and 8 of 24 with 500 + 500 (the previous default; max R-hat
    > 1.01 in 14 of 24).
    """

    name: str
    priors: str = "literature"
    robust_weight: float = 0.5
    spec: str | Mapping[str, Any] = "literature"
    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4


@dataclass(frozen=True)
class SampleSize:
    """Assurance over a grid of cohort sizes (see
    :func:`rechallenge.studies.performance.assurance_table`).

    With ``nested`` (default), replicate *r* simulates one cohort of the largest size
    and the grid's cohorts are its first *n* patients, so the sizes are compared on common
    random numbers and a replicate's larger cohort contains its smaller one. The gain in
    Monte Carlo error is modest. Check: "TFI 95% CI excludes 0" from Cox fits (lifelines)
    at n = 100 vs 200, 150 replicates. The hits at the two sizes correlated 0.26, and the
    MCSE of the difference was 0.037, against 0.041 with independent cohorts
    (``nested: false``).
    """

    scenario: str
    n: tuple[int, ...]
    estimand: str = "log_hr[tfi_le6]"
    method: str | None = None
    target: float = 0.8
    level: float = 0.95
    run_base: bool = True
    nested: bool = True


@dataclass(frozen=True)
class StudyConfig:
    """A whole study (see module docstring)."""

    aims: str
    scenarios: tuple[Scenario, ...]
    estimands: tuple[Estimand, ...]
    methods: tuple[Method, ...]
    replicates: int
    seed: int = 0
    exclude_unreliable: bool = False
    sample_size: SampleSize | None = None
    source: str = field(default="", compare=False)

    def all_scenarios(self) -> tuple[Scenario, ...]:
        """The scenarios plus, with ``sample_size``, the base scenario at every grid size
        (named ``<base>_n<size>``)."""
        out = list(self.scenarios)
        if self.sample_size is not None:
            base = next(s for s in self.scenarios if s.name == self.sample_size.scenario)
            if not self.sample_size.run_base:
                out.remove(base)
            out += [replace(base, name=f"{base.name}_n{n}", n=int(n)) for n in self.sample_size.n]
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (re-read by :func:`config_from_dict`)."""
        d: dict[str, Any] = {"aims": self.aims, "seed": self.seed, "replicates": self.replicates}
        d["scenarios"] = {s.name: {k: (dict(v) if isinstance(v, Mapping) else v)
                                   for k, v in asdict(s).items() if k != "name"} for s in self.scenarios}
        d["estimands"] = [e.text for e in self.estimands]
        d["methods"] = {m.name: {k: v for k, v in asdict(m).items() if k != "name"} for m in self.methods}
        d["performance"] = {"exclude_unreliable": self.exclude_unreliable}
        if self.sample_size is not None:
            ss = asdict(self.sample_size)
            ss["n"] = list(ss["n"])
            d["sample_size"] = ss
        return d

    def fingerprint(self) -> str:
        """SHA-256 of everything that determines the replicates' results (not ``aims``,
        not ``replicates``, so a finished study can be extended with more replicates),
        including the package version: replicates fitted by two versions (whose models or
        samplers may differ) are never mixed in one study."""
        from .. import __version__

        d = self.to_dict()
        d.pop("aims")
        d.pop("replicates")
        d["rechallenge_version"] = __version__
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------- parsing


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise StudyConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _int(value: Any, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise StudyConfigError(f"{where}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise StudyConfigError(f"{where}: name {name!r} must be letters, digits, '_', '.', '-'")
    return name


def _check_keys(d: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise StudyConfigError(f"{where}: unknown key(s) {unknown} (allowed: {list(allowed)})")


def _scenario(name: str, raw: Any) -> Scenario:
    from ..simulate import CovariateSpec, MISSING_ALLOWED, SimulationError, default_truth
    from ..truth_io import merge_truth

    where = f"scenarios.{name}"
    d = _mapping(raw, where)
    _check_keys(d, tuple(f.name for f in Scenario.__dataclass_fields__.values() if f.name != "name"), where)
    if "n" not in d:
        raise StudyConfigError(f"{where}: 'n' (number of patients) is required")
    sc = Scenario(name=name, n=_int(d["n"], f"{where}.n", 1),
                  truth=_mapping(d.get("truth"), f"{where}.truth"),
                  design_prior=d.get("design_prior"),
                  missing=_mapping(d.get("missing"), f"{where}.missing"),
                  mechanism=str(d.get("mechanism", "mcar")),
                  centres=_int(d.get("centres", 0), f"{where}.centres", 0),
                  irae_assessed_fraction=float(d.get("irae_assessed_fraction", 0.9)),
                  covariates=_mapping(d.get("covariates"), f"{where}.covariates"))
    try:
        merge_truth(default_truth(), sc.truth)
        CovariateSpec(**sc.covariates)
    except (SimulationError, TypeError) as exc:
        raise StudyConfigError(f"{where}: {exc}") from None
    if sc.mechanism not in ("mcar", "mar"):
        raise StudyConfigError(f"{where}.mechanism: 'mcar' or 'mar', got {sc.mechanism!r}")
    for col, frac in sc.missing.items():
        if col not in MISSING_ALLOWED or not isinstance(frac, (int, float)) or not 0 <= frac < 1:
            raise StudyConfigError(f"{where}.missing: {col}={frac!r}; columns {list(MISSING_ALLOWED)}, "
                                   "fractions in [0, 1)")
    if not 0 <= sc.irae_assessed_fraction <= 1:
        raise StudyConfigError(f"{where}.irae_assessed_fraction must be in [0, 1]")
    if sc.design_prior is not None and sc.design_prior not in ("literature", "vague") \
            and not Path(str(sc.design_prior)).exists():
        raise StudyConfigError(f"{where}.design_prior: 'literature', 'vague' or a prior-set file, "
                               f"got {sc.design_prior!r}")
    return sc


def _method(name: str, raw: Any, defaults: Mapping[str, Any]) -> Method:
    from ..modelspec import load_spec

    where = f"methods.{name}"
    d = {**defaults, **_mapping(raw, where)}
    _check_keys(d, ("priors", "robust_weight", "spec") + SAMPLER_KEYS, where)
    m = Method(name=name, priors=str(d.get("priors", Method.priors)),
               robust_weight=float(d.get("robust_weight", Method.robust_weight)), spec=d.get("spec", Method.spec),
               sampler=str(d.get("sampler", Method.sampler)),
               draws=_int(d.get("draws", Method.draws), f"{where}.draws", 1),
               tune=_int(d.get("tune", Method.tune), f"{where}.tune", 0),
               chains=_int(d.get("chains", Method.chains), f"{where}.chains", 1))
    if m.priors not in PRIOR_CHOICES and not Path(m.priors).exists():
        raise StudyConfigError(f"{where}.priors: one of {PRIOR_CHOICES} or a prior-set file, got {m.priors!r}")
    if not 0 <= m.robust_weight <= 1:
        raise StudyConfigError(f"{where}.robust_weight must be in [0, 1], got {m.robust_weight}")
    if m.sampler not in ("nutpie", "pymc", "numpyro"):
        raise StudyConfigError(f"{where}.sampler: 'nutpie', 'pymc' or 'numpyro', got {m.sampler!r}")
    try:
        load_spec(m.spec)
    except RechallengeError as exc:
        raise StudyConfigError(f"{where}.spec: {exc}") from None
    return m


def config_from_dict(raw: Mapping[str, Any], *, source: str = "") -> StudyConfig:
    """Validate a study configuration given as a mapping (see module docstring)."""
    d = _mapping(raw, "study configuration")
    _check_keys(d, ("aims", "seed", "replicates", "scenarios", "estimands", "methods", "sampler",
                    "performance", "sample_size"), "study configuration")
    for key in ("scenarios", "estimands", "methods", "replicates"):
        if key not in d:
            raise StudyConfigError(f"study configuration: {key!r} is required")
    scen_raw = _mapping(d["scenarios"], "scenarios")
    meth_raw = _mapping(d["methods"], "methods")
    if not scen_raw or not meth_raw:
        raise StudyConfigError("study configuration: at least one scenario and one method are needed")
    sampler = _mapping(d.get("sampler"), "sampler")
    _check_keys(sampler, SAMPLER_KEYS, "sampler")
    if not isinstance(d["estimands"], list) or not d["estimands"]:
        raise StudyConfigError("estimands: expected a non-empty list such as ['log_hr[tfi_le6]']")
    estimands = tuple(parse_estimand(e) for e in d["estimands"])
    if len({e.text for e in estimands}) != len(estimands):
        raise StudyConfigError("estimands: duplicates")
    perf = _mapping(d.get("performance"), "performance")
    _check_keys(perf, ("exclude_unreliable",), "performance")
    scenarios = tuple(_scenario(_name(k, "scenarios"), v) for k, v in scen_raw.items())
    methods = tuple(_method(_name(k, "methods"), v, sampler) for k, v in meth_raw.items())
    seed = _int(d.get("seed", 0), "seed", 0)
    cfg = StudyConfig(aims=str(d.get("aims", "")).strip(), scenarios=scenarios, estimands=estimands,
                      methods=methods, replicates=_int(d["replicates"], "replicates", 1), seed=seed,
                      exclude_unreliable=bool(perf.get("exclude_unreliable", False)),
                      sample_size=_sample_size(d.get("sample_size"), scenarios, methods), source=source)
    _check_labels(estimands, methods)
    names = [s.name for s in cfg.all_scenarios()]
    if len(set(names)) != len(names):
        raise StudyConfigError(f"scenario names clash (sample-size scenarios are <base>_n<size>): {names}")
    return cfg


def _check_labels(estimands: tuple[Estimand, ...], methods: tuple[Method, ...]) -> None:
    from ..modelspec import load_spec
    from ..simulate import IRAE_ORGANS, TUMOUR_TYPES

    specs = [load_spec(m.spec) for m in methods]
    known = {"log_hr": {c for s in specs for c in s.pfs2_covariates + tuple(e.name for e in s.extra)},
             "log_or": {c for s in specs for c in (s.irae_covariates or ())},
             "tumour_effect": set(TUMOUR_TYPES), "tumour_effect_irae": set(TUMOUR_TYPES),
             "organ_effect": set(IRAE_ORGANS)}
    for e in estimands:
        if e.var in known and e.label not in known[e.var]:
            raise StudyConfigError(f"estimand {e.text!r}: {e.label!r} is not in any method's model "
                                   f"(known: {sorted(known[e.var])})")


def _sample_size(raw: Any, scenarios: tuple[Scenario, ...], methods: tuple[Method, ...]) -> SampleSize | None:
    if raw is None:
        return None
    d = _mapping(raw, "sample_size")
    _check_keys(d, ("scenario", "n", "estimand", "method", "target", "level", "run_base", "nested"),
                "sample_size")
    base = d.get("scenario", scenarios[0].name)
    if base not in {s.name for s in scenarios}:
        raise StudyConfigError(f"sample_size.scenario: unknown scenario {base!r}")
    grid = d.get("n")
    if not isinstance(grid, list) or not grid:
        raise StudyConfigError("sample_size.n: expected a list of cohort sizes, e.g. [50, 100, 200]")
    grid = tuple(sorted({_int(v, "sample_size.n", 1) for v in grid}))
    method = d.get("method", methods[0].name)
    if method not in {m.name for m in methods}:
        raise StudyConfigError(f"sample_size.method: unknown method {method!r}")
    ss = SampleSize(scenario=base, n=grid, estimand=parse_estimand(d.get("estimand", "log_hr[tfi_le6]")).text,
                    method=method, target=float(d.get("target", 0.8)), level=float(d.get("level", 0.95)),
                    run_base=bool(d.get("run_base", True)), nested=bool(d.get("nested", True)))
    if not 0 < ss.target < 1:
        raise StudyConfigError("sample_size.target must be in (0, 1)")
    from .replicate import LEVELS

    if ss.level not in LEVELS:
        raise StudyConfigError(f"sample_size.level must be one of {list(LEVELS)}, got {ss.level}")
    return ss


def load_config(path: str | Path) -> StudyConfig:
    """Read a study configuration YAML file (errors name the file and the key)."""
    path = Path(path)
    raw = read_yaml(path, "study configuration", StudyConfigError)
    try:
        return config_from_dict(raw, source=str(path))
    except StudyConfigError as exc:
        raise StudyConfigError(f"{path}: {exc}") from None
