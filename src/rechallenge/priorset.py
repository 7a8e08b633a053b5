"""`PriorSet`: the model's priors, one :class:`PriorEntry` per model parameter.

A prior set is immutable and keyed by ``(outcome, parameter)``. Each entry carries its
distribution on the modelling scale and its provenance: which evidence rows, which
discounts, how the rows were pooled. Prior sets serialise losslessly to YAML and JSON;
:meth:`PriorSet.hash` is a SHA-256 of the canonical JSON, stamped on every fit.

Modelling scales (``PriorEntry.transform``):

=================  ==========  =====================================================
measure            transform   natural-scale quantity
=================  ==========  =====================================================
``HR``, ``OR``     log         hazard / odds ratio of the adverse level
``median_months``  log         median PFS2 in months
``shape``          log         Weibull shape ``k``
``probability``    logit       probability
``group_sd``       identity    sd of group intercepts, prior ``HalfNormal(scale)``
=================  ==========  =====================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import yaml
from scipy.special import expit, logit, ndtri

from ._resources import atomic_write_text, read_yaml
from .errors import SpecError
from .mixture import NormalMixture

OUTCOMES = ("pfs2", "irae")
TRANSFORMS = {"HR": "log", "OR": "log", "median_months": "log", "shape": "log",
              "probability": "logit", "group_sd": "identity"}
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class PriorEntry:
    """Prior of one model parameter, with its provenance.

    Attributes
    ----------
    parameter, outcome
        Model parameter name (e.g. ``ecog_ge2``) and outcome (``pfs2`` or ``irae``).
    measure
        ``HR``, ``OR``, ``median_months``, ``shape``, ``probability`` or ``group_sd``.
    scale
        What one unit of the parameter means (e.g. ``"NLR >= 3.8 vs < 3.8"``).
    distribution
        Normal mixture on the modelling scale (see module docstring); ``None`` for
        ``group_sd`` entries.
    halfnormal_scale
        Scale of the half-normal prior of a ``group_sd`` entry.
    method
        ``meta_analytic_predictive``, ``single_study``, ``judgement``, ``derived``,
        ``vague`` or ``user``.
    rows, sources
        Evidence row ids used, and ``"Author (ref N, seed S)"`` strings.
    discounts
        Row id → discount names applied to that row.
    robust_weight, n_studies, tau_median
        Weight of the vague component; number of studies pooled; posterior median of the
        between-study sd (``None`` when not estimated).
    ess, ess_unit
        Prior effective sample size and its unit (``events``, ``patients``).
    adverse_level
        The level a ratio > 1 refers to (ratios only).
    note
        Free-text remark (judgement reasons, derivation).
    """

    parameter: str
    outcome: str
    measure: str
    scale: str
    distribution: NormalMixture | None = None
    halfnormal_scale: float | None = None
    method: str = "vague"
    rows: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    discounts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    robust_weight: float = 0.0
    n_studies: int = 0
    tau_median: float | None = None
    ess: float | None = None
    ess_unit: str | None = None
    adverse_level: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise SpecError(f"{self.parameter}: outcome {self.outcome!r} not in {OUTCOMES}")
        if self.measure not in TRANSFORMS:
            raise SpecError(f"{self.parameter}: measure {self.measure!r} not in {sorted(TRANSFORMS)}")
        if self.measure == "group_sd":
            if self.halfnormal_scale is None or not self.halfnormal_scale > 0:
                raise SpecError(f"{self.parameter}: a group_sd prior needs a positive halfnormal_scale")
        elif self.distribution is None:
            raise SpecError(f"{self.parameter}: a {self.measure} prior needs a distribution")

    @property
    def key(self) -> tuple[str, str]:
        return (self.outcome, self.parameter)

    @property
    def transform(self) -> str:
        """Modelling scale: ``log``, ``logit`` or ``identity``."""
        return TRANSFORMS[self.measure]

    def quantiles(self, q: Iterable[float] | float) -> np.ndarray:
        """Quantiles on the natural scale (ratio, months, probability, sd)."""
        q = np.asarray(q, dtype=float)
        if self.measure == "group_sd":
            return self.halfnormal_scale * ndtri((1 + q) / 2)  # type: ignore[operator]
        x = self.distribution.ppf(q)  # type: ignore[union-attr]
        return np.exp(x) if self.transform == "log" else expit(x)

    def summary(self) -> dict[str, Any]:
        """Plain dictionary for tables and ``--format json``."""
        lo, med, hi = (float(v) for v in self.quantiles([0.025, 0.5, 0.975]))
        return {
            "parameter": self.parameter, "outcome": self.outcome, "measure": self.measure,
            "scale": self.scale, "median": med, "lower95": lo, "upper95": hi,
            "n_studies": self.n_studies, "sources": list(self.sources), "method": self.method,
            "rows": list(self.rows), "robust_weight": self.robust_weight,
            "ess": self.ess, "ess_unit": self.ess_unit, "adverse_level": self.adverse_level,
        }

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["distribution"] = self.distribution.to_dict() if self.distribution is not None else None
        d["rows"] = list(self.rows)
        d["sources"] = list(self.sources)
        d["discounts"] = {k: list(v) for k, v in self.discounts.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PriorEntry:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise SpecError(f"prior entry {d.get('parameter')!r}: unknown key(s) {sorted(unknown)}")
        try:
            kwargs = dict(d)
            if kwargs.get("distribution") is not None:
                kwargs["distribution"] = NormalMixture.from_dict(kwargs["distribution"])
            kwargs["rows"] = tuple(kwargs.get("rows", ()))
            kwargs["sources"] = tuple(kwargs.get("sources", ()))
            kwargs["discounts"] = {k: tuple(v) for k, v in (kwargs.get("discounts") or {}).items()}
            return cls(**kwargs)
        except (TypeError, ValueError, KeyError) as exc:
            raise SpecError(f"prior entry {d.get('parameter')!r} is malformed: {exc}") from None


def _canonical(obj: Any, digits: int | None = None) -> Any:
    """JSON-ready copy (plain Python types); floats rounded to ``digits`` significant
    digits when given (used for the hash, so that a save/load round trip, which may
    renormalise mixture weights in the last bit, keeps the hash)."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if digits and math.isfinite(obj) else obj
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v, digits) for v in obj]
    return obj


@dataclass(frozen=True, eq=False)
class PriorSet:
    """The model's priors: an immutable collection of :class:`PriorEntry` objects.

    Build one with :func:`rechallenge.priors.literature_priors` or
    :func:`rechallenge.priors.vague_priors`, change one entry with :meth:`override`,
    and save/load with :meth:`save` / :meth:`load` (YAML or JSON by file suffix).
    """

    name: str
    entries: tuple[PriorEntry, ...]
    source: str = ""

    def __post_init__(self) -> None:
        keys = [e.key for e in self.entries]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise SpecError(f"prior set {self.name!r}: duplicate entries {sorted(dup)}")

    def __getitem__(self, key: tuple[str, str]) -> PriorEntry:
        for entry in self.entries:
            if entry.key == tuple(key):
                return entry
        raise KeyError(f"no prior for {key}; have {[e.key for e in self.entries]}")

    def __contains__(self, key: object) -> bool:
        return any(e.key == key for e in self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def parameters(self, outcome: str) -> list[str]:
        """Parameter names of one outcome, in specification order."""
        return [e.parameter for e in self.entries if e.outcome == outcome]

    def override(self, outcome: str, parameter: str, *, median: float | None = None,
                 sd: float | None = None, distribution: NormalMixture | None = None,
                 halfnormal_scale: float | None = None, note: str = "") -> PriorSet:
        """A copy with one entry replaced by a user-given prior.

        Give ``median`` (natural scale: ratio, months, probability) and ``sd`` (on the
        modelling scale), or a full ``distribution`` on the modelling scale, or a
        ``halfnormal_scale`` for ``group_sd`` entries. The caller's set is not changed.
        """
        old = self[(outcome, parameter)]
        if old.measure == "group_sd":
            if halfnormal_scale is None:
                raise SpecError(f"{parameter}: give halfnormal_scale for a group_sd prior")
            new_dist, new_scale = None, float(halfnormal_scale)
        else:
            if distribution is None:
                if median is None or sd is None:
                    raise SpecError(f"{parameter}: give median and sd, or a distribution")
                centre = math.log(median) if old.transform == "log" else float(logit(median))
                distribution = NormalMixture.normal(centre, sd)
            new_dist, new_scale = distribution, None
        entry = dataclasses.replace(
            old, distribution=new_dist, halfnormal_scale=new_scale, method="user",
            robust_weight=0.0, ess=None, ess_unit=None,
            note=note or f"user override (replaced a {old.method} prior)")
        entries = tuple(entry if e.key == old.key else e for e in self.entries)
        return dataclasses.replace(self, entries=entries, name=f"{self.name}+override")

    def summary_frame(self) -> pd.DataFrame:
        """One row per entry: parameter, outcome, measure, median and 95% interval, …"""
        return pd.DataFrame([e.summary() for e in self.entries])

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "name": self.name, "source": self.source,
                "entries": [e.to_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PriorSet:
        if not isinstance(d, Mapping) or "entries" not in d:
            raise SpecError("not a prior set: expected a mapping with 'entries'")
        if d.get("format_version") != FORMAT_VERSION:
            raise SpecError(f"unsupported prior-set format_version {d.get('format_version')!r}")
        entries = tuple(PriorEntry.from_dict(e) for e in d["entries"])
        return cls(name=str(d.get("name", "custom")), entries=entries, source=str(d.get("source", "")))

    def to_json(self) -> str:
        return json.dumps(_canonical(self.to_dict()), indent=2, sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(_canonical(self.to_dict()), sort_keys=False, allow_unicode=True)

    def hash(self) -> str:
        """SHA-256 of the canonical JSON (independent of file format and key order;
        floats to 10 significant digits)."""
        text = json.dumps(_canonical(self.to_dict(), digits=10), sort_keys=True,
                          separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        """Write as YAML (``.yaml``/``.yml``) or JSON (``.json``), atomically."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            atomic_write_text(path, self.to_yaml())
        elif path.suffix == ".json":
            atomic_write_text(path, self.to_json() + "\n")
        else:
            raise SpecError(f"{path}: use a .yaml, .yml or .json file name")

    @classmethod
    def load(cls, path: str | Path) -> PriorSet:
        """Read a prior set written by :meth:`save`; a corrupt file raises SpecError."""
        path = Path(path)
        if path.suffix != ".json":
            return cls.from_dict(read_yaml(path, "prior set", SpecError))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read prior set {path}: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"prior set {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)
