"""Model specifications (``models/literature.yaml`` and user variants).

A specification is separate from its PyMC translation (as in bambi): it names the
covariates and groups of each outcome, the baseline hazard, and priors for local
``extra`` covariates. It is immutable; :meth:`ModelSpec.to_dict` is what a fit stores.

Keys::

    pfs2: {baseline, cure_fraction, cuts, covariates, extra, groups}
    irae: {covariates, groups}          # or  irae: null  (PFS2 only)
    centred_min_patients: 40
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


from ._resources import read_yaml, resource_path
from .errors import SpecError

#: Literature covariates and the cohort columns they are derived from.
PFS2_COVARIATES: dict[str, str] = {
    "ecog_ge2": "ecog", "pfs1_lt6": "pfs1_months", "tfi_le6": "tfi_months",
    "liver_mets": "liver_mets", "nlr": "nlr", "reason_progression": "discontinuation_reason",
    "reason_irae": "discontinuation_reason",
}
IRAE_COVARIATES: dict[str, str] = {
    "regimen_ctla4": "regimen_class", "prior_irae_grade3plus": "prior_irae_grade",
    "reason_progression": "discontinuation_reason", "reason_irae": "discontinuation_reason",
    "tfi_le6": "tfi_months",
}
PFS2_GROUPS = ("tumour_type", "centre")
IRAE_GROUPS = ("tumour_type", "prior_irae_organ")
BASELINES = ("weibull", "piecewise_exponential")
EXTRA_TYPES = ("binary", "continuous")


@dataclass(frozen=True)
class ExtraCovariate:
    """A local covariate not covered by the reviews.

    The prior is ``log HR ~ N(log median, sd_log²)`` per unit (binary) or per standard
    deviation of the cohort (continuous); default ``N(0, 1)``: HRs between 0.14 and 7.1
    with 95% probability.
    """

    name: str
    type: str
    median: float = 1.0
    sd_log: float = 1.0


@dataclass(frozen=True)
class ModelSpec:
    """A validated model specification (see module docstring)."""

    name: str
    baseline: str
    cure_fraction: bool
    cuts: tuple[float, ...]
    pfs2_covariates: tuple[str, ...]
    extra: tuple[ExtraCovariate, ...]
    pfs2_groups: tuple[str, ...]
    irae_covariates: tuple[str, ...] | None
    irae_groups: tuple[str, ...] = ()
    centred_min_patients: int = 40
    source: str = field(default="", compare=False)

    @property
    def has_irae(self) -> bool:
        return self.irae_covariates is not None

    @property
    def extra_types(self) -> dict[str, str]:
        return {e.name: e.type for e in self.extra}

    def required_columns(self) -> set[str]:
        """Cohort columns this specification needs (besides ``patient_id`` and outcomes)."""
        cols = {PFS2_COVARIATES[c] for c in self.pfs2_covariates} | set(self.pfs2_groups)
        cols |= {e.name for e in self.extra}
        if self.has_irae:
            cols |= {IRAE_COVARIATES[c] for c in self.irae_covariates}  # type: ignore[union-attr]
            cols |= set(self.irae_groups) | {"irae_recurrence"}
        return cols

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pfs2": {"baseline": self.baseline, "cure_fraction": self.cure_fraction,
                     "cuts": list(self.cuts), "covariates": list(self.pfs2_covariates),
                     "extra": {e.name: {"type": e.type, "median": e.median, "sd_log": e.sd_log}
                               for e in self.extra},
                     "groups": list(self.pfs2_groups)},
            "irae": None if not self.has_irae else {
                "covariates": list(self.irae_covariates), "groups": list(self.irae_groups)},  # type: ignore[arg-type]
            "centred_min_patients": self.centred_min_patients,
        }

    def hash(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def replace(self, **changes: Any) -> ModelSpec:
        """A modified copy, validated again (e.g. ``spec.replace(baseline="piecewise_exponential")``)."""
        d = self.to_dict()
        for key, value in changes.items():
            if key in ("baseline", "cure_fraction", "cuts", "extra"):
                d["pfs2"][key] = value
            elif key in ("pfs2_covariates", "pfs2_groups"):
                d["pfs2"][key.split("_", 1)[1]] = value
            elif key == "irae":
                d["irae"] = value
            elif key in ("irae_covariates", "irae_groups"):
                d["irae"][key.split("_", 1)[1]] = value
            else:
                d[key] = value
        return spec_from_dict(d, source=self.source)


def _check_list(where: str, values: Any, allowed: Mapping[str, Any] | tuple[str, ...]) -> tuple[str, ...]:
    if values is None:
        return ()
    if not isinstance(values, (list, tuple)):
        raise SpecError(f"{where}: expected a list, got {values!r}")
    for v in values:
        if v not in allowed:
            hint = difflib.get_close_matches(str(v), list(allowed), n=1)
            raise SpecError(f"{where}: unknown name {v!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                            + f"; allowed: {list(allowed)}")
    if len(set(values)) != len(values):
        raise SpecError(f"{where}: duplicate names in {values!r}")
    return tuple(values)


def _parse_extra(raw: Any) -> tuple[ExtraCovariate, ...]:
    if not raw:
        return ()
    if not isinstance(raw, Mapping):
        raise SpecError(f"pfs2.extra: expected a mapping of column -> type, got {raw!r}")
    out = []
    for name, value in raw.items():
        if name in PFS2_COVARIATES or name in ("patient_id", "pfs2_months", "pfs2_event"):
            raise SpecError(f"pfs2.extra: {name!r} is not an extra column (it is part of the contract)")
        if isinstance(value, str):
            value = {"type": value}
        if not isinstance(value, Mapping) or value.get("type") not in EXTRA_TYPES:
            raise SpecError(f"pfs2.extra.{name}: type must be one of {EXTRA_TYPES}")
        unknown = set(value) - {"type", "median", "sd_log"}
        if unknown:
            raise SpecError(f"pfs2.extra.{name}: unknown key(s) {sorted(unknown)}")
        median, sd = float(value.get("median", 1.0)), float(value.get("sd_log", 1.0))
        if median <= 0 or sd <= 0:
            raise SpecError(f"pfs2.extra.{name}: median and sd_log must be positive")
        out.append(ExtraCovariate(str(name), value["type"], median, sd))
    return tuple(out)


def spec_from_dict(d: Mapping[str, Any], *, source: str = "<dict>") -> ModelSpec:
    """Validate a specification given as a mapping (see module docstring)."""
    if not isinstance(d, Mapping):
        raise SpecError(f"{source}: a model specification is a mapping")
    unknown = set(d) - {"name", "pfs2", "irae", "centred_min_patients"}
    if unknown:
        raise SpecError(f"{source}: unknown key(s) {sorted(unknown)}")
    pfs2 = d.get("pfs2")
    if not isinstance(pfs2, Mapping):
        raise SpecError(f"{source}: 'pfs2' section is required")
    unknown = set(pfs2) - {"baseline", "cure_fraction", "cuts", "covariates", "extra", "groups"}
    if unknown:
        raise SpecError(f"{source}: pfs2: unknown key(s) {sorted(unknown)}")
    baseline = pfs2.get("baseline", "weibull")
    if baseline not in BASELINES:
        raise SpecError(f"{source}: pfs2.baseline must be one of {BASELINES}, got {baseline!r}")
    cuts = tuple(float(c) for c in pfs2.get("cuts", (3, 6, 12)))
    if any(c <= 0 for c in cuts) or list(cuts) != sorted(set(cuts)):
        raise SpecError(f"{source}: pfs2.cuts must be positive and increasing, got {list(cuts)}")
    irae = d.get("irae")
    irae_cov = irae_groups = None
    if irae is not None:
        if not isinstance(irae, Mapping):
            raise SpecError(f"{source}: 'irae' must be a mapping or null")
        unknown = set(irae) - {"covariates", "groups"}
        if unknown:
            raise SpecError(f"{source}: irae: unknown key(s) {sorted(unknown)}")
        irae_cov = _check_list("irae.covariates", irae.get("covariates", []), IRAE_COVARIATES)
        irae_groups = _check_list("irae.groups", irae.get("groups", []), IRAE_GROUPS)
    centred = int(d.get("centred_min_patients", 40))
    if centred < 1:
        raise SpecError(f"{source}: centred_min_patients must be >= 1")
    return ModelSpec(
        name=str(d.get("name", "custom")), baseline=baseline,
        cure_fraction=bool(pfs2.get("cure_fraction", False)), cuts=cuts,
        pfs2_covariates=_check_list("pfs2.covariates", pfs2.get("covariates", []), PFS2_COVARIATES),
        extra=_parse_extra(pfs2.get("extra")),
        pfs2_groups=_check_list("pfs2.groups", pfs2.get("groups", []), PFS2_GROUPS),
        irae_covariates=irae_cov, irae_groups=irae_groups or (),
        centred_min_patients=centred, source=source)


def load_spec(spec: str | Path | Mapping[str, Any] | ModelSpec | None = None) -> ModelSpec:
    """``None``/``"literature"`` (bundled default), a YAML file, a mapping or a ModelSpec."""
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, Mapping):
        return spec_from_dict(spec)
    path = resource_path("models", "literature.yaml") if spec in (None, "literature") else Path(spec)
    data = read_yaml(path, "model specification", SpecError)
    return spec_from_dict(data, source=str(path))
