"""Save and load fits as NetCDF (never pickle), with an integrity hash.

:func:`save` stamps ``content_sha256``: a SHA-256 over the posterior draws and the
fit's attributes (specification, prior set, diagnostics, …). :func:`load` recomputes
it; a file that is not a fit, is truncated, or was changed after saving gets a
:class:`~rechallenge.errors.RechallengeError`. Writing goes through a temporary file
and a rename, so an existing file is never half-overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import RechallengeError

REQUIRED_ATTRS = ("rechallenge_version", "model_spec", "prior_set", "priors_sha256", "reliable")


def content_hash(idata) -> str:
    """SHA-256 of the posterior values and the fit attributes (except the hash)."""
    h = hashlib.sha256()
    post = idata.posterior
    for name in sorted(post.data_vars):
        h.update(name.encode())
        h.update(np.ascontiguousarray(post[name].values, dtype=np.float64).tobytes())
    # NetCDF returns integers as NumPy scalars: normalise so the hash survives a round trip.
    attrs = {k: (v.item() if isinstance(v, np.generic) else v)
             for k, v in idata.attrs.items() if k != "content_sha256"}
    h.update(json.dumps(attrs, sort_keys=True, default=str).encode())
    return h.hexdigest()


def save(idata, path: str | Path) -> Path:
    """Write a fit to ``path`` (NetCDF) atomically; returns the path."""
    path = Path(path)
    if path.suffix not in (".nc", ".netcdf"):
        raise RechallengeError(f"{path}: a fit is saved as NetCDF; use a .nc file name")
    missing = [a for a in REQUIRED_ATTRS if a not in idata.attrs]
    if missing:
        raise RechallengeError(f"not a rechallenge fit (attributes {missing} missing)")
    idata.attrs["content_sha256"] = content_hash(idata)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        idata.to_netcdf(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path):
    """Read a fit written by :func:`save` and check its integrity hash."""
    import arviz as az

    path = Path(path)
    if not path.exists():
        raise RechallengeError(f"fit file not found: {path}")
    try:
        idata = az.from_netcdf(path)
    except Exception as exc:  # netCDF4/h5py raise many types for corrupt files
        raise RechallengeError(f"{path} is not a readable NetCDF fit ({type(exc).__name__})") from None
    missing = [a for a in REQUIRED_ATTRS + ("content_sha256",) if a not in idata.attrs]
    if missing or "posterior" not in idata.groups():
        raise RechallengeError(f"{path} is not a rechallenge fit (missing {missing or ['posterior']})")
    if content_hash(idata) != idata.attrs["content_sha256"]:
        raise RechallengeError(f"{path}: integrity check failed — the file was changed after it "
                               "was saved, or is corrupt")
    return idata


def load_posterior(path: str | Path):
    """Read only what predictions need from a saved fit — the posterior draws and the
    attributes — without ArviZ or PyMC, and check the integrity hash.

    The posterior group is read with h5py directly (~30 ms; xarray's opening and decoding
    of every variable took ~130 ms, and imported dask) when it holds nothing to decode but
    NaN fill values; anything else, or a hash that does not match, is read again through
    :func:`xarray.load_dataset`.

    Returns a :class:`rechallenge.literature_model.PosteriorModel`.
    """
    import xarray as xr

    from .literature_model import PosteriorModel

    path = Path(path)
    if not path.exists():
        raise RechallengeError(f"fit file not found: {path}")
    read = None
    try:
        read = _read_posterior_h5py(path)
    except Exception:  # not plain (or not readable): xarray decides below
        read = None
    if read is not None:
        model = PosteriorModel(read[0], read[1])
        if not [a for a in REQUIRED_ATTRS + ("content_sha256",) if a not in model.attrs] \
                and content_hash(model) == model.attrs["content_sha256"]:
            return model
    try:
        with xr.open_dataset(path) as root:
            attrs = dict(root.attrs)
        posterior = xr.load_dataset(path, group="posterior")
    except Exception as exc:  # netCDF4/h5py raise many types for corrupt files
        raise RechallengeError(f"{path} is not a readable NetCDF fit ({type(exc).__name__})") from None
    model = PosteriorModel(posterior, attrs)
    missing = [a for a in REQUIRED_ATTRS + ("content_sha256",) if a not in attrs]
    if missing:
        raise RechallengeError(f"{path} is not a rechallenge fit (missing {missing})")
    if content_hash(model) != attrs["content_sha256"]:
        raise RechallengeError(f"{path}: integrity check failed — the file was changed after it "
                               "was saved, or is corrupt")
    return model


#: Variable attributes that xarray would decode (scales, times, masks, …): such a file is
#: read through xarray.
_DECODED_ATTRS = ("scale_factor", "add_offset", "units", "calendar", "missing_value", "_Unsigned",
                  "coordinates", "dtype", "flag_values", "flag_meanings", "compress", "bounds")
#: HDF5 attributes of the netCDF-4 layout, not attributes of the data (as h5netcdf hides them).
_LAYOUT_ATTRS = ("REFERENCE_LIST", "CLASS", "DIMENSION_LIST", "NAME", "_Netcdf4Dimid", "_Netcdf4Coordinates",
                 "_nc3_strict", "_NCProperties")
_NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable"


def _attr_value(value):
    """An HDF5 attribute as h5netcdf/xarray return it: text as str, one number as a scalar."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == (1,) and value.dtype.kind in "biuf":
        return value[0]
    return value


def _read_posterior_h5py(path: Path):
    """``(posterior Dataset, root attributes)`` as ``xarray.load_dataset`` decodes them, read
    with h5py from the netCDF-4 layout (only the posterior group), for a posterior that
    needs no decoding beyond NaN fill values; None for anything else."""
    import h5py
    import xarray as xr

    with h5py.File(path, "r") as f:
        attrs = {k: _attr_value(v) for k, v in f.attrs.items() if k not in _LAYOUT_ATTRS}
        group = f["posterior"]
        group_attrs = {k: _attr_value(v) for k, v in group.attrs.items() if k not in _LAYOUT_ATTRS}
        if any(k in group_attrs for k in _DECODED_ATTRS):
            return None
        datasets = {name: obj for name, obj in group.items() if isinstance(obj, h5py.Dataset)}
        if len(datasets) != len(group):
            return None
        dim_names = {}  # netCDF dimension id -> name: the group's dimension scales
        for name, d in datasets.items():
            if d.attrs.get("CLASS") == b"DIMENSION_SCALE":
                dim_names[int(d.attrs["_Netcdf4Dimid"])] = name
        coords, data_vars = {}, {}
        for name, d in datasets.items():
            raw = dict(d.attrs)
            var_attrs = {k: _attr_value(v) for k, v in raw.items() if k not in _LAYOUT_ATTRS}
            fill = var_attrs.pop("_FillValue", None)
            if name in dim_names.values():
                if str(_attr_value(raw.get("NAME", b""))).startswith(_NOT_A_VARIABLE):
                    continue  # a dimension without labels
                dims = (name,)
            elif "_Netcdf4Coordinates" in raw:
                ids = [int(i) for i in np.atleast_1d(raw["_Netcdf4Coordinates"])]
                if any(i not in dim_names for i in ids):
                    return None
                dims = tuple(dim_names[i] for i in ids)
            else:
                return None
            if any(k in var_attrs for k in _DECODED_ATTRS) or len(dims) != d.ndim or d.dtype.kind not in "fiuO" or (
                    fill is not None and not (d.dtype.kind == "f" and np.all(np.isnan(fill)))):
                return None
            index = dims == (name,)
            if d.dtype.kind == "O":  # text: only as labels of a dimension (fixed-width, as xarray)
                if not index or h5py.check_string_dtype(d.dtype) is None:
                    return None
                values = d.asstr()[...].astype(str)
            else:
                values = d[...]
            (coords if index else data_vars)[name] = xr.Variable(dims, values, var_attrs)
    return xr.Dataset(data_vars, coords=coords, attrs=group_attrs), attrs
