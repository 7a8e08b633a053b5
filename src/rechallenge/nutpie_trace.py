"""nutpie's raw Arrow trace as ArviZ ``InferenceData`` (posterior and sample stats).

nutpie converts its trace with ``arviz.from_dict``, which also builds empty warm-up groups
and copies every array through several xarray merges: 0.06–0.08 s of a 0.7 s refit of 300
patients (benchmarks/RESULTS.md, 2026-11-22, session 9). This builds the same two groups — same
variables, dims, coordinates, dtypes and values, warm-up draws dropped — straight from the
Arrow columns (tested against nutpie's own conversion).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Mapping

import arviz as az
import numpy as np
import pandas as pd
import pyarrow
import xarray as xr

#: Sample-stat columns nutpie leaves out unless asked to store them (its ``store_*``
#: settings) and the chain/draw indices, which are the dims.
_SKIPPED_STATS = frozenset({"unconstrained_draw", "gradient", "mass_matrix_inv", "mass_matrix_eigvals",
                            "mass_matrix_stds", "divergence_start", "divergence_end", "divergence_momentum",
                            "divergence_start_gradient", "chain", "draw"})


def _column(batch, name: str, first: int) -> tuple[np.ndarray, list[str]]:
    """Rows ``first:`` of a column as an array (rows, *shape), and the column's dims."""
    column = batch.column(name)
    meta = column.field.metadata
    dims = meta[b"dims"].decode().split(",") if meta.get(b"dims") else []
    shape = [int(s) for s in meta[b"shape"].decode().split(",")] if meta.get(b"shape") else []
    values = pyarrow.array(column)
    if hasattr(values, "flatten"):
        values = values.flatten()
    array = values.to_numpy(zero_copy_only=False).reshape(batch.num_rows, *shape)
    return array[first:], dims


def _dataset(batches, firsts, skip: Iterable[str], coords: Mapping[str, pd.Index]) -> xr.Dataset:
    skip = set(skip)
    names = [field.name for field in batches[0].schema if field.name not in skip]
    variables = {}
    used_coords = {}
    for name in names:
        parts = [_column(batch, name, first) for batch, first in zip(batches, firsts)]
        dims = parts[0][1]
        stacked = np.stack([values for values, _ in parts])
        if len(dims) != stacked.ndim - 2:
            dims = [f"{name}_dim_{i}" for i in range(stacked.ndim - 2)]
        variables[name] = (("chain", "draw", *dims), stacked)
        used_coords.update({dim: coords[dim] for dim in dims if dim in coords})
    n_draws = batches[0].num_rows - firsts[0]
    attrs = {"created_at": datetime.now(timezone.utc).isoformat(), "arviz_version": az.__version__}
    return xr.Dataset(variables, coords={"chain": np.arange(len(batches)), "draw": np.arange(n_draws),
                                         **used_coords}, attrs=attrs)


def to_inference_data(trace, coords: Mapping[str, pd.Index],
                      skip_posterior: Iterable[str] = ()) -> az.InferenceData:
    """Posterior and sample stats of a raw nutpie trace (``nutpie.sample(...,
    return_raw_trace=True)``), without the warm-up draws.

    Parameters
    ----------
    trace
        nutpie's raw trace (Arrow storage).
    coords
        Coordinates of the model's named dims (``compiled_model.coords``).
    skip_posterior
        Traced variables to leave out of the posterior.
    """
    draws, stats = trace.get_arrow_trace()
    firsts = [int(np.asarray(pyarrow.array(batch.column("tuning"))).sum()) for batch in stats]
    if len(set(batch.num_rows - first for batch, first in zip(stats, firsts))) != 1:
        raise ValueError("nutpie returned chains of different lengths")
    coords = {name: pd.Index(values) for name, values in coords.items()}
    return az.InferenceData(posterior=_dataset(draws, firsts, skip_posterior, coords),
                            sample_stats=_dataset(stats, firsts, _SKIPPED_STATS, coords))
