"""Tests of `rechallenge simulate`, truth files (rechallenge.truth_io) and the draw <-> truth map.

The command is run through ``rechallenge.cli.main`` when it is wired there, otherwise
through a parser built from ``rechallenge.studies.cli`` with the same error handling.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rechallenge.errors import RechallengeError
from rechallenge.simulate import default_truth, simulate_cohort, to_csv_text
from rechallenge.studies import cli as study_cli
from rechallenge.truth_io import merge_truth, read_truth, truth_from_draw, truth_to_values, write_truth


def run(argv: list[str]) -> int:
    """``rechallenge <argv>``: the real entry point when it knows the subcommand."""
    from rechallenge import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if argv[0] in sub.choices:
        return cli.main(argv)
    parser = argparse.ArgumentParser(prog="rechallenge")
    subparsers = parser.add_subparsers(dest="command", required=True)
    study_cli.add_simulate_parser(subparsers)
    study_cli.add_study_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except RechallengeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


# --------------------------------------------------------------------------- simulate command


def test_same_seed_same_bytes_and_truth_written(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    common = ["--n", "120", "--missing", "nlr=0.2,ecog=0.1", "--mechanism", "mar", "--centres", "3"]
    assert run(["simulate", *common, "--seed", "4", "--out", str(a)]) == 0
    assert run(["simulate", *common, "--seed", "4", "--out", str(b)]) == 0
    assert run(["simulate", *common, "--seed", "5", "--out", str(c)]) == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    ta, tb = tmp_path / "a.truth.yaml", tmp_path / "b.truth.yaml"
    assert ta.read_bytes() == tb.read_bytes()
    # the file is exactly the simulator's output, and its truth the realised truth
    sim = simulate_cohort(120, seed=4, missing={"nlr": 0.2, "ecog": 0.1}, missing_mechanism="mar", n_centres=3)
    assert a.read_text() == to_csv_text(sim.data)
    assert read_truth(ta).to_dict() == sim.truth.to_dict()
    assert set(read_truth(ta).tumour_effects) == set(sim.truth.tumour_effects)


def test_truth_file_changes_and_truth_out(tmp_path):
    changes = tmp_path / "mine.yaml"
    changes.write_text("beta: {nlr: 0.0}\nshape: 1.3\n")
    out, tout = tmp_path / "x.csv", tmp_path / "where" / "t.yaml"
    assert run(["simulate", "--n", "50", "--out", str(out), "--truth", str(changes), "--truth-out", str(tout)]) == 0
    t = read_truth(tout)
    assert t.beta["nlr"] == 0.0 and t.shape == 1.3 and t.beta["ecog_ge2"] == default_truth().beta["ecog_ge2"]
    expected = simulate_cohort(50, seed=0, truth=merge_truth(default_truth(), {"beta": {"nlr": 0.0}, "shape": 1.3}))
    assert out.read_text() == to_csv_text(expected.data)


def test_from_prior_is_deterministic_and_differs_from_default(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert run(["simulate", "--n", "40", "--seed", "2", "--from-prior", "--out", str(a)]) == 0
    assert run(["simulate", "--n", "40", "--seed", "2", "--from-prior", "literature", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    t = read_truth(tmp_path / "a.truth.yaml")
    assert t.beta != default_truth().beta and t.log_median_ref != default_truth().log_median_ref


@pytest.mark.parametrize("extra, message", [
    (["--missing", "nlr=2"], "--missing"),
    (["--missing", "age=0.1"], "--missing"),
    (["--n", "0"], "--n"),
    (["--truth", "MISSING.yaml"], "cannot read truth file"),
])
def test_user_errors_exit_2_and_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "c.csv"
    argv = ["simulate", "--n", "20", "--out", str(out)] + [e.replace("MISSING", str(tmp_path / "nope")) for e in extra]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "c.truth.yaml").exists()


def test_existing_output_is_untouched_on_error(tmp_path):
    out = tmp_path / "c.csv"
    out.write_text("precious\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("shape: -1\n")
    assert run(["simulate", "--n", "20", "--out", str(out), "--truth", str(bad)]) == 2
    assert out.read_text() == "precious\n"


# --------------------------------------------------------------------------- truth files


def test_truth_yaml_round_trip(tmp_path):
    truth = simulate_cohort(80, seed=1, n_centres=2).truth
    path = write_truth(truth, tmp_path / "t.yaml")
    assert read_truth(path) == truth
    assert path.read_text().startswith("#")


@pytest.mark.parametrize("text, message", [
    ("beta: [1, 2\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("beta: {nlr: 0.1}\n", "incomplete truth"),
    ("colour: red\n", "unknown truth fields"),
])
def test_bad_truth_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(RechallengeError, match=message) as info:
        read_truth(path)
    assert str(path) in str(info.value)


def test_partial_truth_merges_onto_base(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"gamma": {"tfi_le6": 0.5}, "a_any": -0.5}))
    t = read_truth(path, base=default_truth())
    assert t.gamma["tfi_le6"] == 0.5 and t.gamma["regimen_ctla4"] == default_truth().gamma["regimen_ctla4"]
    assert t.a_any == -0.5


# --------------------------------------------------------------------------- draws <-> truth


def test_truth_from_draw_and_back_is_the_identity():
    from rechallenge.modelspec import load_spec
    from rechallenge.prior_draws import draw_prior
    from rechallenge.priors import literature_priors
    from rechallenge.simulate import IRAE_ORGANS, TUMOUR_TYPES

    spec = load_spec("literature")
    levels = {"tumour_type": TUMOUR_TYPES, "prior_irae_organ": IRAE_ORGANS, "centre": ["all"]}
    draws = draw_prior(spec, literature_priors(), levels, draws=5, seed=3)
    for i in range(5):
        truth = truth_from_draw(draws, i, spec)
        values = truth_to_values(truth, spec)
        assert math.isclose(truth.shape, math.exp(float(draws["log_shape"].values[0, i])))
        for var, da in values.items():
            expected = draws[var].isel(chain=0, draw=i)
            if da.ndim:
                expected = expected.sel({da.dims[0]: da[da.dims[0]].values})
            np.testing.assert_allclose(da.values, expected.values, rtol=1e-12, atol=1e-12, err_msg=var)
        # a_3 is logit P(grade >= 3) of the reference patient: sigma(a) sigma(b)
        p3 = float(draws["irae_p_grade3plus_ref"].values[0, i])
        assert math.isclose(truth.a_3, math.log(p3 / (1 - p3)), rel_tol=1e-10)


def test_truth_to_values_of_default_truth():
    from rechallenge.modelspec import load_spec

    spec = load_spec("literature")
    v = truth_to_values(default_truth(), spec)
    assert float(v["log_hr"].sel(pfs2_covariate="tfi_le6")) == pytest.approx(math.log(1.8))
    assert float(v["irae_p_grade3plus_ref"]) == pytest.approx(0.08)
    assert float(v["irae_p_any_ref"]) == pytest.approx(0.30)
    assert "tumour_effect" not in v                     # the default truth draws them
    small = spec.replace(irae=None)
    assert "log_or" not in truth_to_values(default_truth(), small)


def test_default_truth_path():
    assert study_cli.default_truth_path(Path("d/c.csv")) == Path("d/c.truth.yaml")
    assert study_cli.default_truth_path(Path("d/c")) == Path("d/c.truth.yaml")
