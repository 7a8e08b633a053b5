r"""One patient's report: PFS2 and irAE recurrence with credible intervals, the review's
checklist, and where the numbers come from.

:func:`build_reports` makes one :class:`PatientReport` per patient from the numbers of a
single :func:`rechallenge.predict.predict` call — computed without building its Dataset,
the curves' quantiles from a selection of the draws' order statistics — (the patients
plus, for each, a **reference patient**: the same tumour type, centre, regimen and prior irAE, with every other
covariate at its favourable level — ECOG 0, PFS1 12 months, TFI 12 months, no liver
metastases, NLR 2.0, first course stopped by clinical decision, binary ``extra``
covariates 0). A report renders as JSON (:meth:`PatientReport.to_dict`), text
(:meth:`~PatientReport.to_text`), one self-contained HTML file (:func:`to_html`) and a
PDF (:func:`write_pdf`).

**Numbers.** ``estimate`` is the posterior median, ``lower``/``upper`` the central
(equal-tailed) credible interval of mass ``ci`` — exactly the values of
:func:`rechallenge.predict.summarise`. A median PFS2 beyond the last time (36 months by
default) is *not reached*: ``estimate`` (and any limit beyond it) is ``None`` and
``not_reached_probability`` is the posterior probability that the median lies beyond.
:meth:`~PatientReport.to_dict` keeps full floats; text and HTML show the same values
rounded by :func:`display_numbers` (probabilities as whole numbers per 100 patients,
half up; months to one decimal), so every renderer shows identical numbers.

**Local share.** How much of each estimate comes from the local data rather than the
literature priors:

.. math:: \mathrm{local\_share}_q = \min\bigl(1, \max\bigl(0,\;
          1 - \operatorname{Var}_{\mathrm{post}}[g(q)] / \operatorname{Var}_{\mathrm{prior}}[g(q)]\bigr)\bigr)

with :math:`g` = logit for probabilities (clipped to [1e-6, 1 − 1e-6]) and log for
months (the median capped at the horizon first, so "not reached" draws count as the
horizon). :math:`\operatorname{Var}_{\mathrm{prior}}` is the variance of the same
patient's prediction from draws of the fit's *own* prior set, specification and group
levels (:func:`rechallenge.prior_draws.draw_prior`, :data:`PRIOR_DRAWS` draws, seed
:data:`PRIOR_SEED`): 0 means the data did not narrow the prior, 1 that the data determine
the estimate. The literature model has no local data: its share is 0 ("all from the
literature"). The share compares spreads, not locations: data that move an estimate
without narrowing it give a small share.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import RechallengeError
from .report_text import PROBABILITIES, QUANTITIES, RULES_ONLY, display_numbers, months, per100, render_text
from .rules import Assessment, RulesError, assess

__all__ = ["CURVE_QUANTILES", "PRIOR_DRAWS", "PRIOR_SEED", "QUANTITIES", "REFERENCE", "PatientReport",
           "build_reports", "display_numbers", "months", "per100", "render_text", "to_html", "write_pdf"]

CURVE_QUANTILES = (0.025, 0.25, 0.5, 0.75, 0.975)
#: Values of the reference patient (other fields are the patient's own).
REFERENCE = {"ecog": 0.0, "pfs1_months": 12.0, "tfi_months": 12.0, "liver_mets": 0.0, "nlr": 2.0,
             "discontinuation_reason": "clinical_decision"}
INPUT_FIELDS = ("tumour_type", "ecog", "pfs1_months", "tfi_months", "liver_mets", "nlr", "discontinuation_reason",
                "regimen_class", "prior_irae_organ", "prior_irae_grade", "centre")
PRIOR_DRAWS = 4000
PRIOR_SEED = 0
_CHUNK = 16  # patients per predict call: bounds the memory of the survival curves
_REF_PREFIX = "__reference__"


def _clean(value: Any) -> Any:
    """JSON-ready scalar: NaN/None -> None, NumPy scalars -> Python."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


@dataclass(frozen=True, eq=False)
class PatientReport:
    """Everything shown to a clinician for one patient (immutable).

    Attributes
    ----------
    patient_id
        The patient's id.
    inputs
        The patient's values (cohort-contract names plus :data:`RULES_ONLY` fields;
        ``None`` = not given, averaged over by the model).
    summary
        Quantity -> ``{"estimate", "lower", "upper"}`` (+ ``"not_reached_probability"``
        for ``pfs2_median_months``); ``None`` = not reached. irAE quantities are absent
        when the model has no irAE part.
    reference_inputs, reference_summary
        The same for the reference patient (see the module docstring).
    times
        Months of the curve quantiles.
    curve, reference_curve
        S(t) posterior quantiles, shape ``(len(CURVE_QUANTILES), len(times))``.
    assessment
        The review's checklist (:func:`rechallenge.rules.assess`).
    reliable
        False when the fit did not pass its convergence gate.
    warnings
        Missing covariates averaged over, new groups, extrapolation, …
    source, source_kind
        Where the draws come from (text) and ``"literature"`` or ``"fit"``.
    local_share
        Quantity -> share of the estimate's certainty due to local data, in [0, 1]
        (``None`` if undefined); see the module docstring.
    ci
        Mass of the credible intervals.
    horizon_months
        Last time of the curve: a median beyond it is "not reached".
    """

    patient_id: str
    inputs: Mapping[str, Any]
    summary: Mapping[str, Mapping[str, float | None]]
    reference_inputs: Mapping[str, Any]
    reference_summary: Mapping[str, Mapping[str, float | None]]
    times: np.ndarray
    curve: np.ndarray
    reference_curve: np.ndarray
    assessment: Assessment
    reliable: bool
    warnings: tuple[str, ...]
    source: str
    source_kind: str
    local_share: Mapping[str, float | None]
    ci: float
    horizon_months: float

    def to_dict(self, curves: bool = False) -> dict[str, Any]:
        """JSON-ready dict (full floats; ``None`` = not reached / not given).

        Keys: ``patient_id``, ``inputs``, the six quantities (each ``{"estimate",
        "lower", "upper"}``, the median also ``"not_reached_probability"``), ``ci``,
        ``reliable``, ``warnings``, ``criteria`` (``{"id", "criterion", "status",
        "source", "detail"}``), ``contraindicated``, ``contraindication_reasons``,
        ``guidance``, ``local_share``, ``source``, ``source_kind``, ``horizon_months``,
        ``reference`` (inputs and quantities of the reference patient); with
        ``curves=True`` also ``curves`` (``times``, ``quantiles``, ``patient``,
        ``reference``).
        """
        a = self.assessment.to_dict()
        out: dict[str, Any] = {"patient_id": self.patient_id, "inputs": dict(self.inputs)}
        out.update({q: dict(v) for q, v in self.summary.items()})
        out.update({"ci": self.ci, "reliable": self.reliable, "warnings": list(self.warnings),
                    "criteria": a["criteria"], "contraindicated": a["contraindicated"],
                    "contraindication_reasons": a["contraindication_reasons"],
                    "guidance": a["guidance"], "local_share": dict(self.local_share),
                    "source": self.source, "source_kind": self.source_kind,
                    "horizon_months": self.horizon_months,
                    "reference": {"inputs": dict(self.reference_inputs),
                                  **{q: dict(v) for q, v in self.reference_summary.items()}}})
        if curves:
            out["curves"] = {"times": self.times.tolist(), "quantiles": list(CURVE_QUANTILES),
                             "patient": self.curve.tolist(), "reference": self.reference_curve.tolist()}
        return out

    def to_text(self) -> str:
        """Plain-text report: natural-frequency sentences, checklist and caveats."""
        return render_text(self.to_dict())

    def to_html(self) -> str:
        """One self-contained HTML page (inline CSS and PNG figures, no links)."""
        return to_html([self])


# --------------------------------------------------------------------------- building


def _validate(model: Any, patients: Any) -> tuple[Any, pd.DataFrame]:
    """The validated Cohort and the rules-only columns (one row per patient).

    Rules-only columns (:data:`RULES_ONLY`) are split off before the cohort contract's
    validation, which does not know them; :func:`rechallenge.rules.assess` checks them.
    """
    from .cohort import Cohort, read_cohort, validate_cohort
    from .predict import model_spec

    spec = model_spec(model)
    required = sorted(spec.required_columns())
    if isinstance(patients, Cohort):
        return patients, patients.data[[c for c in RULES_ONLY if c in patients.data]].reset_index(drop=True)
    source = "<patients>"
    one = isinstance(patients, Mapping)
    if one or (isinstance(patients, (list, tuple)) and patients and all(isinstance(p, Mapping) for p in patients)):
        # as the DataFrame branch below, splitting the rules-only fields off the records
        # first (pandas' column selection and drop cost more than the rest for one patient)
        rows = [dict(patients)] if one else [dict(p) for p in patients]
        rules = [c for c in RULES_ONLY if any(c in r for r in rows)]
        extra = (pd.DataFrame([{c: r.get(c, np.nan) for c in rules} for r in rows]) if rules
                 else pd.DataFrame(index=pd.RangeIndex(len(rows)), columns=pd.Index([], dtype=object)))
        table = pd.DataFrame([{k: v for k, v in r.items() if k not in RULES_ONLY} for r in rows])
        if "patient_id" not in table:
            table.insert(0, "patient_id", [f"patient_{i + 1}" for i in range(len(table))])
        cohort = validate_cohort(table, required=required, extra=spec.extra_types, outcomes=False,
                                 source="<patient>" if one else source)
        return cohort, extra
    if isinstance(patients, pd.DataFrame):
        table = patients.copy()
    elif isinstance(patients, (str, Path)):
        path = Path(patients)
        try:
            with path.open(encoding="utf-8-sig") as f:
                header = f.readline()
        except (OSError, UnicodeDecodeError):
            header = ""
        if not any(c in header for c in RULES_ONLY):  # the cohort reader's own messages
            return read_cohort(path, required=required, extra=spec.extra_types, outcomes=False), pd.DataFrame()
        table = pd.read_csv(path, dtype=object, keep_default_na=False, skip_blank_lines=True)
        source = path.name
    else:
        raise TypeError("patients must be a mapping, a list of mappings, a DataFrame, a Cohort or a CSV "
                        f"path, got {type(patients).__name__}")
    extra = table[[c for c in RULES_ONLY if c in table]].reset_index(drop=True)
    table = table.drop(columns=list(extra.columns)).reset_index(drop=True)
    if "patient_id" not in table:
        table.insert(0, "patient_id", [f"patient_{i + 1}" for i in range(len(table))])
    cohort = validate_cohort(table, required=required, extra=spec.extra_types, outcomes=False, source=source)
    return cohort, extra


_INTEGER_FIELDS = ("ecog", "liver_mets", "prior_irae_grade", "irae_resolved_grade")


def _inputs(row: Mapping[str, Any], extra_cols: Iterable[str]) -> dict[str, Any]:
    """The values shown and passed to the checklist (grades as int, ``None`` = missing)."""
    out = {}
    for k in (*INPUT_FIELDS, *extra_cols, *RULES_ONLY):
        if k not in row:
            continue
        v = _clean(row[k])
        if isinstance(v, str) and not v.strip():
            v = None
        if k == "steroids_tapered" and isinstance(v, (str, int, float)) and not isinstance(v, bool):
            v = {"true": True, "yes": True, "y": True, "1": True, "1.0": True,
                 "false": False, "no": False, "n": False, "0": False, "0.0": False}.get(str(v).strip().lower(), v)
        if k in _INTEGER_FIELDS and v is not None:
            try:
                f = float(v)
                v = int(f) if f.is_integer() else v
            except (TypeError, ValueError):
                pass  # the checklist rejects it, naming the field
        out[k] = v
    return out


def _assess(pid: str, row: int, inputs: Mapping[str, Any]) -> Assessment:
    """The checklist; an impossible value is a CohortError naming row, patient and field."""
    from .errors import CohortError

    try:
        return assess(inputs)
    except RulesError as exc:
        prefix = str(RulesError("", field=exc.field))
        message = str(exc)[len(prefix):] if str(exc).startswith(prefix) else str(exc)
        raise CohortError(message, row=row, patient_id=pid, column=exc.field) from None


def _records(data: pd.DataFrame) -> list[dict[str, Any]]:
    """``data.to_dict("records")`` (Python scalars), without pandas' per-cell boxing."""
    columns = {c: data[c].tolist() for c in data.columns}
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _reference_ids(data: pd.DataFrame) -> list[str]:
    taken = set(data["patient_id"])
    prefix = _REF_PREFIX
    while any(str(p).startswith(prefix) for p in taken):
        prefix = "_" + prefix
    return [f"{prefix}{i}" for i in range(len(data))]


def _reference_rows(data: pd.DataFrame, binary_extra: Sequence[str]) -> pd.DataFrame:
    ref = data.copy()
    for k, v in REFERENCE.items():
        if k in ref:
            ref[k] = v
    for k in binary_extra:
        ref[k] = 0.0
    ref["patient_id"] = _reference_ids(data)
    return ref


def _with_references(part: pd.DataFrame, records: list[dict[str, Any]], binary_extra: Sequence[str]
                     ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """``pd.concat([part, _reference_rows(part, binary_extra)], ignore_index=True)`` and the
    reference rows as records, built column by column (pandas' copy, assignments and concat
    took ~1 ms for one patient)."""
    n = len(part)
    fixed = {**{k: v for k, v in REFERENCE.items() if k in part}, **dict.fromkeys(binary_extra, 0.0)}
    fixed["patient_id"] = ids = _reference_ids(part)
    if any(k not in part for k in fixed):  # a declared column the patients lack: as concat
        ref = _reference_rows(part, binary_extra)
        return pd.concat([part, ref], ignore_index=True), ref.to_dict("records")
    columns = {}
    for c in part.columns:
        values = part[c].to_numpy()
        if c == "patient_id":
            added = np.array(ids, dtype=object)
        elif c in fixed:
            added = np.full(n, fixed[c], dtype=values.dtype)
        else:
            added = values
        columns[c] = np.concatenate([values, added])
    refs = [{**r, **{k: v for k, v in fixed.items() if k != "patient_id"}, "patient_id": rid}
            for r, rid in zip(records, ids)]
    return pd.DataFrame(columns), refs


def _summary_dicts(summaries: Mapping[str, Mapping[str, np.ndarray]], inverse: Mapping[str, np.ndarray]
                   ) -> list[dict[str, dict[str, float | None]]]:
    """Per patient: quantity -> {estimate, lower, upper[, not_reached_probability]}, from
    the summaries of the distinct patterns (:func:`rechallenge.predict._summaries`)."""
    n = len(next(iter(inverse.values())))
    out: list[dict[str, dict[str, float | None]]] = [{} for _ in range(n)]
    for q, s in summaries.items():
        for i, k in enumerate(inverse[q]):
            d = {"estimate": _clean(float(s["estimate"][k])), "lower": _clean(float(s["lower"][k])),
                 "upper": _clean(float(s["upper"][k]))}
            if "not_reached_probability" in s:
                d["not_reached_probability"] = float(s["not_reached_probability"][k])
            out[i][q] = d
    return out


def _curve_ranks(n_draws: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The order statistics ``np.quantile`` (linear) combines for :data:`CURVE_QUANTILES`:
    (ranks, position in ranks of the lower and upper one of each quantile, weight)."""
    pos = np.asarray(CURVE_QUANTILES) * (n_draws - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_draws - 1)
    ranks, index = np.unique(np.concatenate([lo, hi]), return_inverse=True)
    return ranks, index[:lo.size], index[lo.size:], pos - lo


def _curve_quantiles(order_statistics: np.ndarray, n_draws: int) -> np.ndarray:
    """(n, T, ranks) order statistics of S(t) over the draws (:func:`_curve_ranks`) ->
    (n, len(CURVE_QUANTILES), T), as ``np.quantile`` (linear) computes them."""
    _, lo, hi, w = _curve_ranks(n_draws)
    q = order_statistics[..., lo] * (1 - w) + order_statistics[..., hi] * w  # (n, T, Q)
    return np.moveaxis(q, -1, 1)


def _transformed(q: str, v: np.ndarray, horizon: float) -> np.ndarray:
    if q in PROBABILITIES:
        p = np.clip(v, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))
    return np.log(np.clip(np.where(np.isfinite(v), v, horizon), 1e-6, horizon))


@lru_cache(maxsize=4)
def _prior_posterior(spec_json: str, prior_json: str, levels_json: str) -> Any:
    from .modelspec import spec_from_dict
    from .prior_draws import draw_prior
    from .priorset import PriorSet

    return draw_prior(spec_from_dict(json.loads(spec_json)), PriorSet.from_dict(json.loads(prior_json)),
                      json.loads(levels_json), draws=PRIOR_DRAWS, seed=PRIOR_SEED)


@lru_cache(maxsize=1)
def _default_prevalence() -> tuple[tuple[str, float], ...]:
    from .literature_model import _read_artefact

    return tuple(_read_artefact()["covariate_prevalence"].items())


def _prior_model(model: Any) -> Any:
    """The fit's prior predictive as a model: draws from its own priors, same attrs."""
    from .literature_model import PosteriorModel

    attrs = dict(model.attrs)
    prevalence = dict(_default_prevalence())
    prevalence.update(json.loads(attrs.get("covariate_prevalence") or "{}"))
    post = model.posterior
    if "prevalence" in post and "imputed_covariate" in post.coords:
        for j, name in enumerate(post["imputed_covariate"].values):
            prevalence[str(name)] = float(post["prevalence"].values[..., j].mean())
    attrs.update(reliable=1, covariate_prevalence=json.dumps(prevalence), covariate_ranges="{}")
    posterior = _prior_posterior(str(attrs["model_spec"]), str(attrs["prior_set"]), str(attrs["levels"]))
    return PosteriorModel(posterior, attrs)


def _local_shares(model: Any, spec: Any, patients: Any, new: Mapping[str, list[str]],
                  post_values: Mapping[str, np.ndarray], horizon: float, seed: int
                  ) -> list[dict[str, float | None]]:
    """Per patient: 1 − Var_post / Var_prior of each quantity (transformed), in [0, 1].

    ``patients`` are the prepared patients (:func:`rechallenge.predict_inputs.prepare_patients`) whose
    posterior draws are the columns of ``post_values``; the prior model shares the fit's
    specification, standardisation and group levels, so they are its patients too.
    """
    from .predict import _compute

    prior = _compute(_prior_model(model), spec, patients, dict(new), np.array([horizon]), seed, keep_curves=False)
    n = len(patients.ids)
    ratios = {}
    for q, v in post_values.items():
        vp = np.var(_transformed(q, np.ascontiguousarray(prior["values"][q][:, prior["inverse"][q]].T), horizon),
                    axis=-1)
        vq = np.var(_transformed(q, np.ascontiguousarray(v.T), horizon), axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[q] = (vp, np.clip(1 - vq / vp, 0, 1))
    return [{q: float(share[i]) if vp[i] > 0 and np.isfinite(vp[i]) else None
             for q, (vp, share) in ratios.items()} for i in range(n)]


def _source(model: Any, pred_source: str) -> tuple[str, str]:
    attrs = model.attrs
    if str(pred_source).startswith("literature") or str(attrs.get("n_patients", "")) == "0":
        return "literature prior (no local data)", "literature"
    n, events = attrs.get("n_patients"), attrs.get("n_events")
    what = f"local fit ({n} patients, {events} PFS2 events)" if n is not None else "local fit"
    return what, "fit"


def build_reports(model: Any, patients: Any, *, ci: float = 0.95, seed: int = 0,
                  times: Iterable[float] | None = None) -> list[PatientReport]:
    """One :class:`PatientReport` per patient, in input order.

    Parameters
    ----------
    model
        A fit (:func:`rechallenge.fitio.load_posterior` / :func:`~rechallenge.fitio.load`)
        or :func:`rechallenge.literature_model.literature_model`.
    patients
        A mapping (one patient), a list of mappings, a DataFrame, a Cohort or a CSV path
        with the cohort contract's columns (outcomes absent; blanks in imputable columns
        are averaged over) and optionally ``irae_resolved_grade`` / ``steroids_tapered``
        for the checklist.
    ci
        Mass of the central credible intervals.
    seed
        Seed of :func:`~rechallenge.predict.predict` (new groups, missing covariates).
    times
        Months of the curves (default 0-36 by 0.5); the last one is the horizon.

    Raises
    ------
    RechallengeError
        For invalid values (a :class:`~rechallenge.errors.CohortError` naming row and
        column, or a checklist field naming the patient), or ``ci`` outside (0, 1).
    """
    from .predict import DEFAULT_TIMES, _compute, _summaries, _times
    from .predict_inputs import model_spec, prepare_patients

    if not 0 < ci < 1:
        raise RechallengeError(f"ci must be in (0, 1), got {ci!r}")
    times = DEFAULT_TIMES if times is None else np.asarray(sorted(float(t) for t in times))
    cohort, rules_extra = _validate(model, patients)
    spec = model_spec(model)
    data = cohort.data.reset_index(drop=True)
    spec_extra = cohort.extra
    binary_extra = [k for k, t in spec_extra.items() if t == "binary"]
    literature = None
    inputs, assessments = [], []
    records = _records(data)
    for i, row in enumerate(records):  # checklist errors before any prediction
        rules_row = rules_extra.iloc[i].to_dict() if len(rules_extra.columns) else {}
        inputs.append(_inputs({**row, **rules_row}, spec_extra))
        assessments.append(_assess(str(row["patient_id"]), i + 1, inputs[-1]))
    reports: list[PatientReport] = []
    source, kind = _source(model, str(model.attrs.get("source", "fit")))
    reliable = bool(int(model.attrs.get("reliable", 0)))
    n_draws = model.posterior.sizes["chain"] * model.posterior.sizes["draw"]
    for start in range(0, len(data), _CHUNK):
        part = data.iloc[start:start + _CHUNK].reset_index(drop=True)
        table, references = _with_references(part, records[start:start + _CHUNK], binary_extra)
        both = dataclasses.replace(cohort, data=table)
        # what predict(model, both, times, seed) and summarise(…) compute, without the
        # Dataset and the table: each distinct patient (pattern) drawn and summarised once
        grid = _times(times)
        pts, new = prepare_patients(model, both, spec)
        arrays = _compute(model, spec, pts, new, grid, seed, keep_curves=True, curve_ranks=_curve_ranks(n_draws)[0])
        horizon = arrays["horizon"]
        summ = _summary_dicts(_summaries(arrays["values"], horizon, ci, "eti"), arrays["inverse"])
        n = len(part)
        curves = _curve_quantiles(arrays["curves"], n_draws)[arrays["curves_inverse"]]
        curves.setflags(write=False)
        quantities = list(arrays["values"])
        if kind == "fit":
            values = {q: v[:, arrays["inverse"][q][:n]] for q, v in arrays["values"].items()}
            shares = _local_shares(model, spec, pts.rows(range(n)), new, values, horizon, seed)
        else:
            literature = literature or {q: 0.0 for q in quantities}
            shares = [literature] * n
        grid = grid.copy()
        grid.setflags(write=False)
        for i in range(n):
            pid = str(records[start + i]["patient_id"])
            reports.append(PatientReport(
                patient_id=pid, inputs=inputs[start + i], summary=summ[i],
                reference_inputs=_inputs(references[i], spec_extra), reference_summary=summ[n + i],
                times=grid, curve=curves[i], reference_curve=curves[n + i],
                assessment=assessments[start + i], reliable=reliable,
                warnings=tuple(w for w in "; ".join(pts.warnings[i]).split("; ") if w), source=source,
                source_kind=kind, local_share=dict(shares[i]), ci=float(ci), horizon_months=horizon))
    return reports


# --------------------------------------------------------------------------- renderers


def to_html(reports: Sequence[PatientReport]) -> str:
    """One self-contained HTML page for one or more reports."""
    from .report_html import render_html

    return render_html(reports)


def write_pdf(reports: Sequence[PatientReport], path: str | Path) -> Path:
    """Write the reports to a PDF (one or more pages each), atomically."""
    from .report_figures import write_pdf as _write

    return _write(reports, path)
