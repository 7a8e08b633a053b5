"""Patients to predict for: validated against the fit's specification, their
covariates derived and standardised as in the fit, group levels coded, and one list of
plain-language warnings per patient (:func:`prepare_patients`).

Used by :mod:`rechallenge.predict` and :mod:`rechallenge.report`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .cohort import Cohort, read_cohort, validate_cohort
from .modelspec import ModelSpec, spec_from_dict

__all__ = ["MISSING_LABELS", "Patients", "attr_json", "model_spec", "as_cohort", "prepare_patients"]

#: Plain-language names of covariates that can be missing, for warnings.
MISSING_LABELS = {"ecog_ge2": "ECOG performance status", "pfs1_lt6": "PFS1 (first-course PFS)",
                  "tfi_le6": "treatment-free interval", "liver_mets": "liver metastases",
                  "nlr": "NLR (neutrophil-to-lymphocyte ratio)"}


@dataclass(frozen=True)
class Patients:
    """Predictor arrays of a batch of patients (NaN = missing)."""

    ids: np.ndarray
    x_pfs2: np.ndarray
    x_irae: np.ndarray
    tumour: np.ndarray
    centre: np.ndarray
    organ: np.ndarray
    warnings: list[list[str]]

    def rows(self, rows: Any) -> "Patients":
        """The patients ``rows`` (group codes unchanged: same new-group list)."""
        rows = np.asarray(rows, dtype=np.int64)
        return Patients(self.ids[rows], self.x_pfs2[rows], self.x_irae[rows], self.tumour[rows],
                         self.centre[rows], self.organ[rows], [self.warnings[i] for i in rows])


def attr_json(model: Any, key: str, default: Any) -> Any:
    """A JSON attribute of a fit, or ``default`` when the fit does not have it."""
    value = model.attrs.get(key)
    return default if value is None else json.loads(value)


def model_spec(model: Any) -> ModelSpec:
    """The specification a fit (or the literature model) was made with."""
    return spec_from_dict(json.loads(model.attrs["model_spec"]))


def as_cohort(patients: Any, spec: ModelSpec) -> Cohort:
    """Patients to predict for, validated against the columns ``spec`` uses (a Cohort, a
    DataFrame, whose ``patient_id`` may be absent, or a CSV path; no outcome columns)."""
    required = sorted(spec.required_columns())
    if isinstance(patients, Cohort):
        return patients
    if isinstance(patients, pd.DataFrame):
        df = patients.copy()
        if "patient_id" not in df:
            df.insert(0, "patient_id", [f"patient_{i + 1}" for i in range(len(df))])
        return validate_cohort(df, required=required, extra=spec.extra_types, outcomes=False,
                               source="<patients>")
    return read_cohort(patients, required=required, extra=spec.extra_types, outcomes=False)


def _group_codes(values: Iterable[str], levels: list[str], label: str, warnings: list[list[str]]
                 ) -> tuple[np.ndarray, list[str]]:
    """Index of each value in ``levels``; unseen values get new indices after them."""
    lookup = {v: i for i, v in enumerate(levels)}
    new: list[str] = []
    codes = []
    for i, v in enumerate(values):
        if v not in lookup:
            lookup[v] = len(levels) + len(new)
            new.append(v)
        if lookup[v] >= len(levels):
            warnings[i].append(f"{label} {v!r} is not in the fit: a new group drawn from the "
                               "group-level distribution (wider interval)")
        codes.append(lookup[v])
    return np.asarray(codes, dtype=np.int64), new


def _covariates(cohort: Cohort, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Derived covariates ``names`` of a validated cohort, as float arrays.

    The values of :meth:`Cohort.covariates` — the definitions are
    :func:`rechallenge.cohort.derive_covariates`' table — computed with NumPy on the
    cohort's normalised columns (float numbers, stripped text) instead of several pandas
    operations per covariate, which dominated one patient's prediction. Anything else
    (extra columns, unusual dtypes) goes through :meth:`Cohort.covariates` itself.
    """
    from .cohort import _DERIVATIONS, _NUM

    data = cohort.data
    out: dict[str, np.ndarray] = {}
    general = None
    for name in names:
        fast = name in _DERIVATIONS and name not in cohort.extra and _DERIVATIONS[name][0] in data
        if fast:
            source, kind, predicate, _ = _DERIVATIONS[name]
            raw = data[source].to_numpy()
            if kind == _NUM and raw.dtype == np.float64:
                col = np.asarray(predicate(raw), dtype=float)
                col[np.isnan(raw)] = np.nan
                out[name] = col
                continue
            if kind != _NUM and raw.dtype == object and all(type(v) is str for v in raw):
                text = np.array([v.strip() for v in raw], dtype=object)
                col = np.asarray(predicate(text), dtype=float)
                col[text == ""] = np.nan
                out[name] = col
                continue
        general = cohort.covariates() if general is None else general
        out[name] = general[name].to_numpy(dtype=float)
    return out


def prepare_patients(model: Any, cohort: Cohort, spec: ModelSpec) -> tuple[Patients, dict[str, list[str]]]:
    """Predictor arrays of ``cohort`` for the fit ``model`` and the unseen group levels.

    Covariates are derived and standardised as in the fit; each patient's warnings
    name a value outside the fitted cohort's range, a missing covariate (averaged over
    its distribution) and a tumour type, centre or organ the fit has not seen (a new
    group). Returns the patients and ``{group: [new levels]}``.
    """
    data = cohort.data
    n = len(data)
    warnings: list[list[str]] = [[] for _ in range(n)]
    standardisation = attr_json(model, "standardisation", {})
    pfs2_names = list(spec.pfs2_covariates) + [e.name for e in spec.extra]
    irae_names = list(spec.irae_covariates or ())
    x_cov = _covariates(cohort, dict.fromkeys(pfs2_names + irae_names))
    for name, col in x_cov.items():
        if name in standardisation:
            mean, sd = standardisation[name]
            x_cov[name] = (col - mean) / sd
    ranges = attr_json(model, "covariate_ranges", {})
    for column, (lo, hi) in ranges.items():
        if column in data:
            values = data[column].astype(float).to_numpy()
            with np.errstate(invalid="ignore"):
                outside = np.isfinite(values) & ~((lo <= values) & (values <= hi))
            for i in np.flatnonzero(outside):
                warnings[i].append(f"{column} = {float(values[i]):g} is outside the fitted cohort's range "
                                   f"[{lo:g}, {hi:g}]: extrapolation")
    for name, col in x_cov.items():
        label = MISSING_LABELS.get(name, name)
        for i in np.flatnonzero(np.isnan(col)):
            warnings[i].append(f"{label} is missing: averaged over its distribution (wider interval)")
    levels = {k: list(v) for k, v in attr_json(model, "levels", {}).items()}
    tumour_values = data["tumour_type"].astype(str) if "tumour_type" in data else pd.Series(["all"] * n)
    tumour, new_t = _group_codes(tumour_values, levels.get("tumour_type", ["all"]), "tumour type", warnings)
    if "centre" in spec.pfs2_groups and "centre" in data:
        keys = tumour_values + "/" + data["centre"].astype(str)
        centre, new_c = _group_codes(keys, levels.get("centre", ["all"]), "centre", warnings)
    else:
        centre, new_c = np.zeros(n, dtype=np.int64), []
    if spec.has_irae and "prior_irae_organ" in (spec.irae_groups or ()):
        organ, new_o = _group_codes(data["prior_irae_organ"].astype(str), levels.get("prior_irae_organ", ["all"]),
                                    "prior irAE organ", warnings)
    else:
        organ, new_o = np.zeros(n, dtype=np.int64), []
    patients = Patients(
        ids=data["patient_id"].astype(str).to_numpy(),
        x_pfs2=np.column_stack([x_cov[k] for k in pfs2_names]) if pfs2_names else np.zeros((n, 0)),
        x_irae=np.column_stack([x_cov[k] for k in irae_names]) if irae_names else np.zeros((n, 0)),
        tumour=tumour, centre=centre, organ=organ, warnings=warnings)
    return patients, {"tumour_type": new_t, "centre": new_c, "prior_irae_organ": new_o}
