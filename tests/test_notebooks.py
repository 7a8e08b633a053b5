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
        "04_simulation_study.ipynb": 3,  # coverage, bias, assurance (quick mode: RECHALLENGE_QUICK=1)
        "05_validate_on_ncctg.ipynb": 3}  # calibration, KM posterior predictive check, irAE
#: notebooks that shrink themselves when RECHALLENGE_QUICK=1 is set (the fast test sets it)
QUICK = {"04_simulation_study.ipynb"}


def run_notebook(name: str, timeout: int = 300) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    return nb


def count_images(nb: nbformat.NotebookNode) -> int:
    return len([o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if "image/png" in o.get("data", {})])


@pytest.mark.parametrize("name", sorted(FAST))
def test_notebook_runs(name, monkeypatch, tmp_path):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend is headless
    if name in QUICK:  # the kernel inherits this process's environment
        monkeypatch.setenv("RECHALLENGE_QUICK", "1")
        monkeypatch.setenv("RECHALLENGE_NB04_OUT", str(tmp_path))  # fresh checkpoints: fit every time
    nb = run_notebook(name)
    assert count_images(nb) >= FAST[name]


@pytest.mark.slow
def test_simulation_study_full_size(monkeypatch, tmp_path):
    """Notebook 04 at full size (about 4 minutes on 2 cores), from empty checkpoints."""
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.delenv("RECHALLENGE_QUICK", raising=False)
    monkeypatch.setenv("RECHALLENGE_NB04_OUT", str(tmp_path))
    nb = run_notebook("04_simulation_study.ipynb", timeout=900)
    assert count_images(nb) >= FAST["04_simulation_study.ipynb"]
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "full-size run" in text and text.count(", 0 failed fits") == 2
