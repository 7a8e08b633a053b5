"""The `rechallenge` console script, run as a user would run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = shutil.which("rechallenge", path=str(Path(sys.executable).parent)) or "rechallenge"
CARD = ("ecog_ge2", "pfs1_lt6", "tfi_le6", "liver_mets", "nlr")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="module")
def priors_json() -> list[dict]:
    result = run("priors", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_json_has_one_object_per_parameter_with_the_required_keys(priors_json):
    required = {"parameter", "outcome", "measure", "median", "lower95", "upper95", "n_studies",
                "sources", "scale"}
    for obj in priors_json:
        assert required <= set(obj), obj["parameter"]
        assert obj["outcome"] in ("pfs2", "irae")
        assert obj["lower95"] < obj["median"] < obj["upper95"]
        assert isinstance(obj["sources"], list) and all(isinstance(s, str) for s in obj["sources"])
    pfs2 = {o["parameter"]: o for o in priors_json if o["outcome"] == "pfs2"}
    for name in CARD:
        assert pfs2[name]["measure"] == "HR"
        assert pfs2[name]["lower95"] > 0  # ratio scale, not log scale
        assert pfs2[name]["n_studies"] >= 2
        assert all("ref" in s for s in pfs2[name]["sources"])
    assert "NLR" in pfs2["nlr"]["scale"] and "3.8" in pfs2["nlr"]["scale"]
    assert {o["measure"] for o in priors_json if o["outcome"] == "irae"} >= {"OR", "probability"}


def test_table_is_readable(priors_json):
    result = run("priors")
    assert result.returncode == 0
    for obj in priors_json:
        assert obj["parameter"] in result.stdout
    assert "95% interval" in result.stdout


def test_vague_set_and_yaml_format():
    result = run("priors", "--set", "vague", "--format", "yaml")
    assert result.returncode == 0
    assert "name: vague" in result.stdout


def test_save_and_reload_gives_the_same_numbers(tmp_path, priors_json):
    out = tmp_path / "mine.json"
    assert run("priors", "--out", str(out), "--format", "json").returncode == 0
    again = run("priors", "--set", str(out), "--format", "json")
    assert again.returncode == 0
    assert [o["median"] for o in json.loads(again.stdout)] == pytest.approx(
        [o["median"] for o in priors_json])


def test_missing_prior_file_is_a_user_error_without_traceback(tmp_path):
    result = run("priors", "--set", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.stderr


def test_malformed_evidence_names_the_row_and_writes_nothing(tmp_path, write_evidence):
    bad = write_evidence({"E016": {"lower95": "1.95"}})
    out = tmp_path / "priors.yaml"
    out.write_text("previous content\n")
    result = run("priors", "--evidence", str(bad), "--out", str(out))
    assert result.returncode == 2
    assert "E016" in result.stderr and "lower95" in result.stderr
    assert "Traceback" not in result.stderr
    assert out.read_text() == "previous content\n"  # not overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evidence.csv", "priors.yaml"]


def test_evidence_listing(tmp_path):
    result = run("evidence", "--parameter", "tfi_le6", "--format", "json")
    assert result.returncode == 0
    rows = json.loads(result.stdout)
    assert {r["row_id"] for r in rows if r["status"] == "used"} == {"E016", "E018"}
    bad = run("evidence", "--parameter", "no_such_thing")
    assert bad.returncode == 2 and "no evidence rows" in bad.stderr


def test_unknown_subcommand_exits_nonzero():
    assert run("frobnicate").returncode != 0
