"""The notebooks run top to bottom (in a fresh kernel of this environment)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: notebook -> minimum number of figures it must draw
FAST = {"01_priors_from_the_reviews.ipynb": 8,  # forest plots for every card predictor, baselines
        "02_fit_a_local_cohort.ipynb": 2,  # prior predictive check, posterior vs prior
        "03_one_patient.ipynb": 2,  # PFS2 curve against the reference patient, icon array
        "05_validate_on_ncctg.ipynb": 3}  # calibration, KM posterior predictive check, irAE


@pytest.mark.parametrize("name", sorted(FAST))
def test_notebook_runs(name, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend is headless
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= FAST[name]
