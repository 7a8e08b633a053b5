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

    Returns a :class:`rechallenge.literature_model.PosteriorModel`.
    """
    import xarray as xr

    from .literature_model import PosteriorModel

    path = Path(path)
    if not path.exists():
        raise RechallengeError(f"fit file not found: {path}")
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
