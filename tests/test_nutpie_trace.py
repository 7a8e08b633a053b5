"""The raw-trace conversion gives what nutpie's own conversion gives, minus warm-up."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import xarray as xr

from rechallenge.nutpie_trace import to_inference_data

nutpie = pytest.importorskip("nutpie")


def test_conversion_equals_nutpies_own():
    with pm.Model(coords={"arm": ["a", "b", "c"]}) as model:
        effect = pm.Normal("effect", 0, 1, dims="arm")
        scale = pm.HalfNormal("scale", 1)
        pm.Deterministic("total", effect.sum() * scale)
        pm.Normal("y", effect.sum(), scale, observed=np.array([0.3, -0.2, 1.1]))
    compiled = nutpie.compile_pymc_model(model)
    settings = dict(draws=150, tune=100, chains=3, seed=7, cores=1, progress_bar=False)
    expected = nutpie.sample(compiled, save_warmup=False, **settings)
    got = to_inference_data(nutpie.sample(compiled, return_raw_trace=True, **settings), compiled.coords)
    assert set(got.groups()) == {"posterior", "sample_stats"}
    for group in ("posterior", "sample_stats"):
        mine, theirs = getattr(got, group), getattr(expected, group)
        xr.testing.assert_equal(mine, theirs)  # values, dims and coordinates; not attrs
        assert {name: mine[name].dtype for name in mine.data_vars} == {name: theirs[name].dtype for name in theirs.data_vars}
    assert got.posterior.sizes["draw"] == 150
    assert list(got.posterior["effect"].coords["arm"].values) == ["a", "b", "c"]
    assert "arviz_version" in got.posterior.attrs
    skipped = to_inference_data(nutpie.sample(compiled, return_raw_trace=True, **settings), compiled.coords,
                                skip_posterior=["total"])
    assert "total" not in skipped.posterior and "effect" in skipped.posterior
