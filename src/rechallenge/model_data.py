"""Cohort + specification → the arrays the model needs (NumPy only, no PyMC).

Missing binary covariates are **marginalised exactly**: a patient with ``m`` missing
binary covariates contributes ``2^m`` *rows*, one per configuration of the missing
values, and the model sums the likelihood over them weighted by the configuration's
probability under the covariates' own prevalences (independent Bernoulli, learned from
the observed values; missing at random given the outcome model's other inputs):

``L_i = Σ_c Π_{j ∈ M_i} p_j^{x_jc} (1 − p_j)^{1 − x_jc} · L_i(x_c)``.

Missing values of continuous ``extra`` columns are imputed as latent standard-normal
values (the column is standardised). Nothing is dropped; the counts imputed are kept in
``ModelData.n_imputed``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .loglik import exposure_matrix
from .modelspec import ModelSpec

IRAE_NOT_ASSESSED = -1


@dataclass(frozen=True, eq=False)
class ModelData:
    """Arrays for one cohort under one specification (``N`` patients, ``R`` rows).

    Attributes
    ----------
    patient_ids : (N,) str
    time, event : (N,) PFS2 months and event flag
    pfs2_names, irae_names : covariate names (columns of the design matrices)
    rows_patient : (R,) patient of each row; ``first_row`` : (N,) its first row
    x_pfs2, x_irae : (R, P), (R, Q) complete design matrices per row
    imputed_names : binary covariates with at least one missing value
    row_imputed, row_value : (R, M) whether covariate m is imputed in the row, and its value
    prevalence_n, prevalence_k : (M,) observed count and number of ones per imputed covariate
    continuous_missing : {column index in x_pfs2: (rows, latent index)} for continuous extras
    n_latent : number of latent continuous values
    tumour_idx, centre_idx, organ_idx : (N,) group indices; ``levels`` their names
    y_irae : (N,) 0/1/2, or ``IRAE_NOT_ASSESSED``
    exposure, interval : piecewise-exponential exposure (N, J) and interval index (N,)
    standardisation : {extra column: (mean, sd)} of continuous extras
    n_imputed : {column: count}
    """

    spec: ModelSpec
    patient_ids: np.ndarray
    time: np.ndarray
    event: np.ndarray
    pfs2_names: tuple[str, ...]
    irae_names: tuple[str, ...]
    rows_patient: np.ndarray
    first_row: np.ndarray
    x_pfs2: np.ndarray
    x_irae: np.ndarray
    imputed_names: tuple[str, ...]
    row_imputed: np.ndarray
    row_value: np.ndarray
    prevalence_n: np.ndarray
    prevalence_k: np.ndarray
    continuous_missing: dict[int, tuple[np.ndarray, np.ndarray]]
    n_latent: int
    tumour_idx: np.ndarray
    centre_idx: np.ndarray
    organ_idx: np.ndarray
    levels: dict[str, tuple[str, ...]]
    y_irae: np.ndarray
    exposure: np.ndarray
    interval: np.ndarray
    standardisation: dict[str, tuple[float, float]] = field(default_factory=dict)
    n_imputed: dict[str, int] = field(default_factory=dict)

    @property
    def n_patients(self) -> int:
        return int(self.time.size)

    @property
    def n_rows(self) -> int:
        return int(self.rows_patient.size)

    @property
    def y_irae_onehot(self) -> np.ndarray:
        """(N, 3) indicators of none / grade 1–2 / grade ≥ 3 (zeros: not assessed)."""
        return (self.y_irae[:, None] == np.arange(3)).astype(float)

    @property
    def expanded(self) -> bool:
        """Whether some patient has several rows (missing binary covariates)."""
        return self.n_rows != self.n_patients

    def irae_patterns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Assessed patients grouped by identical irAE predictors (rows = patients only).

        The irAE part has only binary covariates and group indices, so patients with the
        same predictors share ζ and their outcomes are sufficient statistics (binomial
        aggregation): returns ``(x, tumour_idx, organ_idx, counts)`` with one row per
        distinct pattern and ``counts[:, k]`` the number of patients with outcome k.
        """
        if self.expanded:
            raise ValueError("irAE patterns need one row per patient (no missing binary covariates)")
        assessed = self.y_irae >= 0
        key = np.column_stack([self.x_irae[assessed], self.tumour_idx[assessed], self.organ_idx[assessed]])
        q = self.x_irae.shape[1]
        if not assessed.any():
            return (np.zeros((0, q)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
                    np.zeros((0, 3)))
        unique, inverse = np.unique(key, axis=0, return_inverse=True)
        counts = np.zeros((len(unique), 3))
        np.add.at(counts, (inverse.ravel(), self.y_irae[assessed]), 1.0)
        return (unique[:, :q], unique[:, q].astype(np.int64), unique[:, q + 1].astype(np.int64), counts)

    def pfs2_patterns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        r"""Patients grouped by identical PFS2 predictors (rows = patients only).

        Patients with the same covariates, tumour type and centre share the linear
        predictor η, so :math:`\sum_i e^{\eta_i} w_i = \sum_p e^{\eta_p} \sum_{i \in p} w_i`:
        returns ``(x, tumour_idx, centre_idx, patient_pattern)`` with one row per
        distinct pattern and each patient's pattern index.
        """
        if self.expanded:
            raise ValueError("PFS2 patterns need one row per patient (no missing binary covariates)")
        p = self.x_pfs2.shape[1]
        key = np.column_stack([self.x_pfs2, self.tumour_idx, self.centre_idx])
        unique, inverse = np.unique(key, axis=0, return_inverse=True)
        return (unique[:, :p], unique[:, p].astype(np.int64), unique[:, p + 1].astype(np.int64),
                inverse.ravel().astype(np.int64))

    def group_sizes(self, group: str) -> np.ndarray:
        """Patients per level of ``tumour_type``, ``centre`` or ``prior_irae_organ``."""
        idx = {"tumour_type": self.tumour_idx, "centre": self.centre_idx,
               "prior_irae_organ": self.organ_idx}[group]
        return np.bincount(idx, minlength=len(self.levels[group]))


def _group_index(values: pd.Series | None, n: int,
                 given: Sequence[str] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes of a group column and its levels (sorted; ``given`` when supplied)."""
    if values is None:
        return np.zeros(n, dtype=np.int64), ("all",)
    present = tuple(sorted(pd.unique(values.astype(str))))
    if given is None:
        levels = present
    else:
        levels = tuple(sorted(map(str, given)))
        unknown = sorted(set(present) - set(levels))
        if unknown:
            raise ValueError(f"group levels {unknown} are in the data but not in the given levels")
    lookup = {v: i for i, v in enumerate(levels)}
    return np.array([lookup[v] for v in values.astype(str)], dtype=np.int64), levels


def prepare_data(cohort, spec: ModelSpec, *, outcomes: bool = True,
                 group_levels: Mapping[str, Sequence[str]] | None = None) -> ModelData:
    """Build :class:`ModelData` from a validated :class:`rechallenge.cohort.Cohort`.

    ``group_levels`` fixes the levels of ``tumour_type`` and/or ``prior_irae_organ``
    (a superset of those in the data; absent levels get effects drawn from their group
    distribution). Simulation studies use the full category lists, so that every
    replicate has the same model structure and reuses one compiled model.
    """
    group_levels = group_levels or {}
    data = cohort.data
    cov = cohort.covariates()
    n = len(data)
    extras = [e.name for e in spec.extra]
    pfs2_names = tuple(spec.pfs2_covariates) + tuple(extras)
    irae_names = tuple(spec.irae_covariates or ())
    standardisation: dict[str, tuple[float, float]] = {}
    x_cov = pd.DataFrame(index=cov.index)
    for name in dict.fromkeys(pfs2_names + irae_names):
        col = cov[name].astype(float)
        if name in extras and spec.extra_types[name] == "continuous":
            mean, sd = float(col.mean()), float(col.std(ddof=0)) or 1.0
            standardisation[name] = (mean, sd)
            col = (col - mean) / sd
        x_cov[name] = col
    binary = [c for c in x_cov.columns if c not in standardisation]
    imputed = tuple(c for c in binary if x_cov[c].isna().any())
    n_imputed = {c: int(x_cov[c].isna().sum()) for c in x_cov.columns if x_cov[c].isna().any()}

    rows_patient, configs = [], []
    values = x_cov[list(imputed)].to_numpy() if imputed else np.zeros((n, 0))
    for i in range(n):
        missing = [m for m in range(len(imputed)) if np.isnan(values[i, m])]
        for bits in itertools.product((0.0, 1.0), repeat=len(missing)):
            rows_patient.append(i)
            configs.append(dict(zip(missing, bits)))
    rows_patient = np.asarray(rows_patient, dtype=np.int64)
    first_row = np.searchsorted(rows_patient, np.arange(n))
    row_imputed = np.zeros((len(rows_patient), len(imputed)))
    row_value = np.zeros_like(row_imputed)
    for r, config in enumerate(configs):
        for m, bit in config.items():
            row_imputed[r, m], row_value[r, m] = 1.0, bit

    def design(names: tuple[str, ...]) -> np.ndarray:
        x = x_cov[list(names)].to_numpy(dtype=float)[rows_patient] if names else np.zeros((len(rows_patient), 0))
        for m, name in enumerate(imputed):
            if name in names:
                j = names.index(name)
                mask = row_imputed[:, m] == 1
                x[mask, j] = row_value[mask, m]
        return x

    x_pfs2, x_irae = design(pfs2_names), design(irae_names)
    continuous_missing: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    n_latent = 0
    for name in standardisation:
        j = pfs2_names.index(name)
        miss_rows = np.flatnonzero(np.isnan(x_pfs2[:, j]))
        if miss_rows.size:
            patients = rows_patient[miss_rows]
            uniq, latent = np.unique(patients, return_inverse=True)
            continuous_missing[j] = (miss_rows, latent + n_latent)
            n_latent += uniq.size
            x_pfs2[miss_rows, j] = 0.0
    obs = x_cov[list(imputed)]
    prevalence_n = obs.notna().sum().to_numpy(dtype=float) if imputed else np.zeros(0)
    prevalence_k = obs.fillna(0).sum().to_numpy(dtype=float) if imputed else np.zeros(0)

    uses_tumour = "tumour_type" in spec.pfs2_groups or "tumour_type" in spec.irae_groups
    tumour_idx, tumour_levels = _group_index(data["tumour_type"] if uses_tumour else None, n,
                                               group_levels.get("tumour_type"))
    if "centre" in spec.pfs2_groups and "centre" in data:
        centre_key = data["tumour_type"].astype(str) + "/" + data["centre"].astype(str)
        centre_idx, centre_levels = _group_index(centre_key, n)
    else:
        centre_idx, centre_levels = np.zeros(n, dtype=np.int64), ("all",)
    if "prior_irae_organ" in spec.irae_groups and spec.has_irae:
        organ_idx, organ_levels = _group_index(data["prior_irae_organ"], n, group_levels.get("prior_irae_organ"))
    else:
        organ_idx, organ_levels = np.zeros(n, dtype=np.int64), ("all",)
    if outcomes:
        time = data["pfs2_months"].to_numpy(dtype=float)
        event = data["pfs2_event"].to_numpy(dtype=float)
    else:
        time, event = np.ones(n), np.zeros(n)
    y = cohort.irae_outcome() if (spec.has_irae and outcomes and "irae_recurrence" in data) else np.full(n, np.nan)
    y_irae = np.where(np.isnan(y), IRAE_NOT_ASSESSED, y).astype(np.int64)
    exposure, interval = exposure_matrix(time, spec.cuts)
    return ModelData(
        spec=spec, patient_ids=data["patient_id"].astype(str).to_numpy(), time=time, event=event,
        pfs2_names=pfs2_names, irae_names=irae_names, rows_patient=rows_patient,
        first_row=first_row, x_pfs2=x_pfs2, x_irae=x_irae, imputed_names=imputed,
        row_imputed=row_imputed, row_value=row_value, prevalence_n=prevalence_n,
        prevalence_k=prevalence_k, continuous_missing=continuous_missing, n_latent=n_latent,
        tumour_idx=tumour_idx, centre_idx=centre_idx, organ_idx=organ_idx,
        levels={"tumour_type": tumour_levels, "centre": centre_levels, "prior_irae_organ": organ_levels},
        y_irae=y_irae, exposure=exposure, interval=interval, standardisation=standardisation,
        n_imputed=n_imputed)
