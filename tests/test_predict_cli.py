"""`rechallenge predict`: flags, CSV, formats, errors naming the flag, atomic output, no PyMC."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from rechallenge.literature_model import literature_model
from rechallenge.predict_cli import add_predict_parser, main
from rechallenge.report import build_reports

FLAGS = ["--ecog", "1", "--pfs1", "8", "--tfi", "7", "--liver-mets", "0", "--nlr", "2.9", "--reason", "irae",
         "--tumour", "nsclc", "--regimen", "pd1_pdl1", "--prior-irae-grade", "2", "--prior-irae-organ", "colitis"]
PATIENT = dict(patient_id="patient", ecog=1, pfs1_months=8.0, tfi_months=7.0, liver_mets=0, nlr=2.9,
               discontinuation_reason="irae", tumour_type="nsclc", regimen_class="pd1_pdl1",
               prior_irae_grade=2, prior_irae_organ="colitis")


def _with(**changes):
    """FLAGS with some flags replaced (value None drops the flag)."""
    out, args = [], list(FLAGS)
    pairs = dict(zip(args[::2], args[1::2]))
    for flag, value in changes.items():
        pairs[f"--{flag.replace('_', '-')}"] = value
    for flag, value in pairs.items():
        if value is not None:
            out += [flag, value]
    return out


@pytest.fixture(scope="module")
def fake_fit(tmp_path_factory):
    """A saved 'fit' whose posterior is 500 literature draws (no sampling): exercises
    --model (load_posterior, integrity hash, local share) in a second."""
    az = pytest.importorskip("arviz")
    from rechallenge.fitio import save

    lit = literature_model()
    idata = az.InferenceData(posterior=lit.posterior.isel(draw=slice(0, 500)))
    attrs = {k: v for k, v in lit.attrs.items() if k != "source"}
    idata.attrs.update(attrs, rechallenge_version="0.1.0", n_patients=50, n_events=40)
    return save(idata, tmp_path_factory.mktemp("fit") / "fake.nc")


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_text_report_for_one_patient(capsys):
    code, out, err = run(capsys, FLAGS)
    assert code == 0 and err == ""
    assert out.startswith("ICI rechallenge report — patient")
    assert "Of 100 patients like this, about" in out and "Review checklist" in out


def test_json_equals_build_reports(capsys):
    code, out, _ = run(capsys, FLAGS + ["--format", "json", "--seed", "2", "--id", "P-7"])
    assert code == 0
    (d,) = json.loads(out)
    expected = build_reports(literature_model(), dict(PATIENT, patient_id="P-7"), seed=2)[0].to_dict()
    assert d == json.loads(json.dumps(expected))
    assert d["patient_id"] == "P-7" and d["contraindicated"] is False


def test_grade3_myocarditis_contraindicated(capsys):
    code, out, _ = run(capsys, _with(prior_irae_organ="myocarditis", prior_irae_grade="3") + ["--format", "json"])
    (d,) = json.loads(out)
    assert code == 0 and d["contraindicated"] is True and d["contraindication_reasons"]


@pytest.mark.parametrize("change, flag", [
    ({"ecog": "7"}, "--ecog"),
    ({"pfs1": "-1"}, "--pfs1"),
    ({"nlr": "0"}, "--nlr"),
    ({"tumour": "nscl"}, "--tumour"),
    ({"reason": None}, "--reason"),
    ({"reason": "NA"}, "--reason"),
    ({"liver_mets": "2"}, "--liver-mets"),
    ({"prior_irae_organ": "colitus"}, "--prior-irae-organ"),
    ({"irae_resolved_grade": "3"}, "--irae-resolved-grade"),
])
def test_bad_input_names_the_flag_and_leaves_out_untouched(capsys, tmp_path, change, flag):
    out_file = tmp_path / "report.json"
    out_file.write_text("OLD")
    code, out, err = run(capsys, _with(**change) + ["--format", "json", "--out", str(out_file)])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and flag in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert out_file.read_text() == "OLD" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_unknown_tumour_suggests_closest(capsys):
    _, _, err = run(capsys, _with(tumour="melanom"))
    assert "did you mean 'melanoma'" in err


def test_missing_imputable_flags_are_averaged_with_warning(capsys):
    code, out, _ = run(capsys, _with(ecog="NA", nlr=None) + ["--format", "json"])
    (d,) = json.loads(out)
    assert code == 0 and d["inputs"]["ecog"] is None and d["inputs"]["nlr"] is None
    assert any("ecog" in w.lower() for w in d["warnings"]) and any("nlr" in w.lower() for w in d["warnings"])


def test_grade0_implies_no_organ(capsys):
    code, out, _ = run(capsys, _with(prior_irae_grade="0", prior_irae_organ=None) + ["--format", "json"])
    assert code == 0 and json.loads(out)[0]["inputs"]["prior_irae_organ"] == "none"


def test_patients_csv_and_mixing_is_an_error(capsys, tmp_path):
    csv = tmp_path / "p.csv"
    pd.DataFrame([PATIENT, dict(PATIENT, patient_id="B", ecog="")]).to_csv(csv, index=False)
    code, out, _ = run(capsys, ["--patients", str(csv), "--format", "json"])
    assert code == 0 and [d["patient_id"] for d in json.loads(out)] == ["patient", "B"]
    code, out, err = run(capsys, ["--patients", str(csv), "--ecog", "1"])
    assert code == 2 and "--patients" in err and "--ecog" in err
    bad = tmp_path / "bad.csv"
    pd.DataFrame([PATIENT, dict(PATIENT, patient_id="B", nlr=-2)]).to_csv(bad, index=False)
    code, _, err = run(capsys, ["--patients", str(bad)])
    assert code == 2 and "row 2" in err and "'nlr'" in err


def test_html_and_pdf_need_out_and_are_written(capsys, tmp_path):
    code, _, err = run(capsys, FLAGS + ["--format", "pdf"])
    assert code == 2 and "--out" in err
    html, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    assert run(capsys, FLAGS + ["--format", "html", "--out", str(html)])[0] == 0
    assert run(capsys, FLAGS + ["--format", "pdf", "--out", str(pdf)])[0] == 0
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert pdf.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.pdf"]


def test_saved_fit_and_bad_model_file(capsys, fake_fit, tmp_path):
    code, out, _ = run(capsys, FLAGS + ["--model", str(fake_fit), "--format", "json"])
    (d,) = json.loads(out)
    assert code == 0 and d["source_kind"] == "fit" and set(d["local_share"]) >= {"pfs2_6mo", "irae_any"}
    code, _, err = run(capsys, FLAGS + ["--model", str(tmp_path / "missing.nc")])
    assert code == 2 and "not found" in err


def test_add_predict_parser_wires_into_a_subcommand_parser(capsys):
    parser = argparse.ArgumentParser(prog="rechallenge")
    add_predict_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["predict", *FLAGS, "--format", "json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)[0]["patient_id"] == "patient"


def test_process_never_imports_pymc_or_arviz(fake_fit, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from rechallenge.predict_cli import main
        flags = {FLAGS!r}
        assert main(flags + ["--format", "json"]) == 0
        assert main(flags + ["--model", {str(fake_fit)!r}]) == 0
        assert main(flags + ["--format", "html", "--out", {str(tmp_path / 'r.html')!r}]) == 0
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("pymc", "arviz", "pytensor", "nutpie"))
        print("HEAVY", heavy, file=sys.stderr)
        sys.exit(1 if heavy else 0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stderr


def test_subprocess_error_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "rechallenge.predict_cli", *_with(ecog="7")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "error: --ecog: must be an integer from 0 to 4, got '7'"


def test_rechallenge_predict_when_wired(capsys):
    from rechallenge import cli

    if "predict" not in cli.build_parser()._subparsers._group_actions[0].choices:
        pytest.skip("`predict` is not wired into rechallenge.cli yet")
    assert cli.main(["predict", *_with(ecog="7")]) == 2
    assert "--ecog" in capsys.readouterr().err


def test_load_posterior_reads_what_xarray_reads_and_checks_integrity(fake_fit, tmp_path, monkeypatch):
    """The direct HDF5 reader gives xarray's Dataset and attributes; a changed file is still
    refused, and a file it does not handle is read through xarray."""
    import numpy as np
    import xarray as xr

    from rechallenge import fitio
    from rechallenge.errors import RechallengeError

    fast = fitio._read_posterior_h5py(fake_fit)
    assert fast is not None
    slow = xr.load_dataset(fake_fit, group="posterior")
    xr.testing.assert_identical(fast[0], slow)
    assert {k: v.dtype for k, v in fast[0].variables.items()} == {k: v.dtype for k, v in slow.variables.items()}
    with xr.open_dataset(fake_fit) as root:
        attrs = dict(root.attrs)
    assert fast[1].keys() == attrs.keys()
    assert all(type(fast[1][k]) is type(v) and fast[1][k] == v for k, v in attrs.items())
    model = fitio.load_posterior(fake_fit)
    monkeypatch.setattr(fitio, "_read_posterior_h5py", lambda path: None)
    xr.testing.assert_identical(fitio.load_posterior(fake_fit).posterior, model.posterior)
    monkeypatch.undo()
    tampered = slow.copy(deep=True)
    tampered["log_hr"].values[0, 0, 0] += 0.1
    path = tmp_path / "tampered.nc"
    xr.Dataset(attrs=attrs).to_netcdf(path, engine="h5netcdf")
    tampered.to_netcdf(path, group="posterior", mode="a", engine="h5netcdf")
    assert np.array_equal(fitio._read_posterior_h5py(path)[0]["log_hr"].values, tampered["log_hr"].values)
    with pytest.raises(RechallengeError, match="integrity"):
        fitio.load_posterior(path)
    (tmp_path / "junk.nc").write_bytes(b"not a netcdf file at all")
    with pytest.raises(RechallengeError, match="not a readable"):
        fitio.load_posterior(tmp_path / "junk.nc")


def test_command_line_process_does_not_import_dask(fake_fit):
    """`python -m rechallenge.predict_cli` keeps dask (~0.3 s of imports) out of the process."""
    script = textwrap.dedent(f"""
        import atexit, runpy, sys
        atexit.register(lambda: print("DASK", sorted(m for m, v in sys.modules.items()
                                                     if m.split(".")[0] == "dask" and v is not None), file=sys.stderr))
        sys.argv = ["rechallenge.predict_cli", *{FLAGS!r}, "--model", {str(fake_fit)!r}, "--format", "json"]
        runpy.run_module("rechallenge.predict_cli", run_name="__main__")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)[0]["source_kind"] == "fit"
    assert "DASK []" in proc.stderr


def test_console_script_predict_does_not_import_dask_but_main_leaves_it(fake_fit, monkeypatch):
    """`rechallenge predict` (console_main) blocks dask in its own process; cli.main, as
    called from Python, never touches sys.modules."""
    import rechallenge.cli as cli

    script = textwrap.dedent(f"""
        import atexit, sys
        atexit.register(lambda: print("DASK", sorted(m for m, v in sys.modules.items()
                                                     if m.split(".")[0] == "dask" and v is not None), file=sys.stderr))
        sys.argv = ["rechallenge", "predict", *{FLAGS!r}, "--model", {str(fake_fit)!r}, "--format", "json"]
        from rechallenge.cli import console_main
        sys.exit(console_main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)[0]["source_kind"] == "fit"
    assert "DASK []" in proc.stderr
    before = sys.modules.get("dask", "absent")
    assert cli.main(["predict", *FLAGS, "--model", str(fake_fit), "--format", "json"]) == 0
    assert sys.modules.get("dask", "absent") is before
