"""The clinicians' web page (rechallenge.web): logic without a browser, then end to end.

The end-to-end test starts the page (literature model) on a free port of 127.0.0.1 in a
background thread, drives it with Playwright in headless Debian chromium, and checks
that the numbers on the page are exactly those of ``predict`` + ``summarise`` for the
same patient and seed. Screenshots are written to ``build/web_screenshots/`` (or
``$RECHALLENGE_SCREENSHOTS``); the path is printed (``pytest -s``) and shown in the
test report.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from rechallenge.literature_model import literature_model
from rechallenge.predict import predict, summarise
from rechallenge.report_text import sections
from rechallenge.rules import assess
from rechallenge.web import add_serve_parser, run_serve
from rechallenge.web import logic, view
from rechallenge.web.logic import FormError, format_quantity, patient_from_form

REPO = Path(__file__).resolve().parents[1]
QUANTITIES = tuple(logic.QUANTITY_LABELS)

# A patient with distinctive values (searched for in the logs afterwards).
FORM = {"tumour_type": "melanoma", "ecog": "1", "pfs1_months": "13.37", "tfi_months": "7.25",
        "liver_mets": "0", "nlr": "4.21", "discontinuation_reason": "irae",
        "regimen_class": "ctla4_containing", "prior_irae_grade": "2",
        "prior_irae_organ": "colitis", "irae_resolved_grade": "1", "steroids_tapered": "yes"}
# The same patient written by hand in the cohort contract (independent of the form code).
ROW = {"patient_id": "patient", "ecog": 1, "pfs1_months": 13.37, "tfi_months": 7.25,
       "liver_mets": 0, "nlr": 4.21, "discontinuation_reason": "irae", "tumour_type": "melanoma",
       "regimen_class": "ctla4_containing", "prior_irae_grade": 2, "prior_irae_organ": "colitis"}
MYOCARDITIS = {**FORM, "tumour_type": "nsclc", "pfs1_months": "", "nlr": "",
               "prior_irae_grade": "3", "prior_irae_organ": "myocarditis",
               "irae_resolved_grade": "", "steroids_tapered": ""}


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def expected_numbers(row: dict) -> dict:
    """Numbers straight from predict + summarise (seed 0, 95%)."""
    table = summarise(predict(literature_model(), pd.DataFrame([row]), seed=0), ci=0.95)
    out = {}
    for r in table.itertuples(index=False):
        out[r.quantity] = {"estimate": _nan_to_none(r.estimate), "lower": _nan_to_none(r.lower),
                           "upper": _nan_to_none(r.upper)}
        if r.quantity == "pfs2_median_months":
            out[r.quantity]["not_reached_probability"] = float(r.not_reached_probability)
    return out


# --------------------------------------------------------------------------- no browser


def test_form_maps_to_the_patient_and_the_same_numbers():
    patient = patient_from_form(FORM)
    assert patient["nlr"] == 4.21 and patient["pfs1_months"] == 13.37
    assert patient["irae_resolved_grade"] == 1 and patient["steroids_tapered"] is True
    record = logic.patient_record(literature_model(), patient)
    assert set(record) == set(ROW) | {"irae_resolved_grade", "steroids_tapered"}
    numbers = logic._report_numbers(literature_model(), patient)
    expected = expected_numbers(ROW)
    for q in QUANTITIES:
        assert numbers[q] == expected[q], q
    assert numbers["reliable"] is True and numbers["contraindicated"] is False
    assert [c["criterion"] for c in numbers["criteria"]] == [
        c.criterion for c in assess({**ROW, "irae_resolved_grade": 1, "steroids_tapered": True}).criteria]
    assert all(c["source"] for c in numbers["criteria"])
    # the same dict as the reports (text/HTML/PDF) get
    from rechallenge.report import build_reports
    report = build_reports(literature_model(), {**ROW, "irae_resolved_grade": 1, "steroids_tapered": True})[0]
    assert numbers == report.to_dict()


def test_form_choices_are_the_cohort_categories():
    from rechallenge.cohort import CATEGORIES

    for column in ("discontinuation_reason", "tumour_type", "regimen_class", "prior_irae_organ"):
        assert set(logic.CHOICES[column]) == set(CATEGORIES[column]), column


def test_unknown_values_are_blank_and_averaged_over():
    patient = patient_from_form({**FORM, "ecog": "", "pfs1_months": " ", "liver_mets": "", "nlr": ""})
    assert all(math.isnan(patient[f]) for f in ("ecog", "pfs1_months", "liver_mets", "nlr"))
    numbers = logic._report_numbers(literature_model(), patient)
    assert any("NLR (neutrophil-to-lymphocyte ratio) is missing" in w for w in numbers["warnings"])
    # decimal comma accepted
    assert patient_from_form({**FORM, "nlr": "3,5"})["nlr"] == 3.5
    # follow-up fields are not applicable without a prior irAE
    none = patient_from_form({**FORM, "prior_irae_grade": "0", "prior_irae_organ": "none"})
    assert none["irae_resolved_grade"] is None and none["steroids_tapered"] is None


@pytest.mark.parametrize("change, label", [
    ({"nlr": "0"}, "NLR"),
    ({"nlr": "-2"}, "NLR"),
    ({"nlr": "abc"}, "NLR"),
    ({"pfs1_months": "-1"}, "PFS1 (months)"),
    ({"tfi_months": "inf"}, "Treatment-free interval (months)"),
    ({"ecog": "7"}, "ECOG performance status"),
    ({"tumour_type": "lymphoma"}, "Tumour type"),
    ({"prior_irae_grade": "0"}, "Organ of that irAE"),  # colitis with grade 0
    ({"prior_irae_organ": "none"}, "Organ of that irAE"),  # grade 2 without organ
    ({"irae_resolved_grade": "3"}, "irAE resolved to grade"),  # worse than grade 2
])
def test_invalid_input_gives_a_message_naming_the_field(change, label):
    with pytest.raises(FormError) as info:
        patient_from_form({**FORM, **change})
    assert str(info.value).startswith(label + ": ")
    html = str(view.error_message(str(info.value)))
    assert 'id="input_error"' in html and label in html


def test_report_html_exposes_exact_numbers_and_banners(tmp_path):
    numbers = logic._report_numbers(literature_model(), patient_from_form(FORM))
    html = str(view.report_html(numbers, run=1))
    for q in QUANTITIES:
        e = numbers[q]
        assert f'id="{q}"' in html
        assert f'data-estimate="{e["estimate"]!r}"' in html
        assert format_quantity(q, e).replace("<", "&lt;").replace(">", "&gt;") in html
    for element in ("icon_array", "criteria", "caveats", "summary_text"):
        assert f'id="{element}"' in html
    assert "contraindication_banner" not in html and "reliability_banner" not in html

    bad = logic._report_numbers(literature_model(), patient_from_form(MYOCARDITIS))
    assert bad["contraindicated"] and "myocarditis" in " ".join(bad["contraindication_reasons"])
    assert 'id="contraindication_banner"' in str(view.banners(bad))
    assert 'id="reliability_banner"' in str(view.banners({**bad, "reliable": False}))


def test_formatting():
    assert format_quantity("pfs2_6mo", {"estimate": 0.4249, "lower": 0.3, "upper": 0.551}) == "42% (30%–55%)"
    assert format_quantity("irae_any", {"estimate": 0.004, "lower": 0.0, "upper": 0.995}) == "0% (0%–100%)"
    assert format_quantity("irae_any", {"estimate": 0.125, "lower": 0.005, "upper": 0.5}) == "13% (1%–50%)"
    assert format_quantity("pfs2_median_months", {"estimate": 5.26, "lower": 1.2, "upper": None}) \
        == "5.3 months (1.2–not reached)"
    assert format_quantity("pfs2_median_months", {"estimate": None, "lower": 9.0, "upper": None}) \
        == "not reached (9.0–not reached)"
    assert logic.data_value(0.1 + 0.2) == "0.30000000000000004" and logic.data_value(None) == ""
    assert logic.icon_counts({"irae_any": {"estimate": 0.355}, "irae_grade3plus": {"estimate": 0.109}}) == (36, 11)


def test_saved_fit_is_loaded_and_an_unreliable_fit_is_flagged(tmp_path):
    az = pytest.importorskip("arviz")
    from rechallenge.fitio import save
    from rechallenge.web.app import create_app, load_model

    lit = literature_model()
    idata = az.InferenceData(posterior=lit.posterior)
    idata.attrs.update({**lit.attrs, "rechallenge_version": "test", "reliable": 0,
                        "source": "test fit", "n_patients": 50, "n_events": 30})
    path = save(idata, tmp_path / "fit.nc")
    model = load_model(path)
    numbers = logic._report_numbers(model, patient_from_form(FORM))
    assert numbers["reliable"] is False and numbers["source"].startswith("local fit (50 patients")
    assert set(numbers["local_share"]) == set(QUANTITIES)
    assert 'id="reliability_banner"' in str(view.banners(numbers))
    assert numbers["pfs2_6mo"] == logic._report_numbers(lit, patient_from_form(FORM))["pfs2_6mo"]
    assert type(create_app(path)).__name__ == "App"


def test_serve_defaults_to_localhost_and_warns_otherwise():
    from rechallenge.web.app import host_warning, serve

    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert (args.host, args.port, args.model, args.func) == ("127.0.0.1", 8000, None, run_serve)
    args = parser.parse_args(["serve", "--model", "fit.nc", "--port", "9001", "--host", "0.0.0.0"])
    assert (args.host, args.port, str(args.model)) == ("0.0.0.0", 9001, "fit.nc")
    import inspect
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert host_warning("127.0.0.1") is None and host_warning("localhost") is None
    assert host_warning("::1") is None
    assert "WARNING" in host_warning("0.0.0.0") and "WARNING" in host_warning("192.168.1.5")


def test_page_never_imports_pymc():
    code = ("import sys; from rechallenge.web import create_app; create_app(); "
            "import rechallenge.web.logic as l; "
            "l._report_numbers(__import__('rechallenge.literature_model', fromlist=['x'])"
            ".literature_model(), l.patient_from_form(" + repr(FORM) + ")); "
            "bad = [m for m in ('pymc', 'pytensor', 'arviz') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def server():
    from rechallenge.web.app import build_server

    srv = build_server(None, host="127.0.0.1", port=0)  # literature model, free port
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the web server did not start")
        time.sleep(0.05)
    yield srv
    srv.should_exit = True
    thread.join(timeout=10)


def _screenshot_dir() -> Path:
    path = Path(os.environ.get("RECHALLENGE_SCREENSHOTS", REPO / "build" / "web_screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fill(page, form: dict) -> None:
    # grade first: the follow-up fields only show for a prior irAE
    for field in ("prior_irae_grade", *[f for f in form if f != "prior_irae_grade"]):
        value = form[field]
        if field in logic.NUMBER_FIELDS:
            page.fill(f"#{field}", value)
        elif page.is_visible(f"#{field}"):
            page.select_option(f"#{field}", value)


def _on_page(page, quantity: str) -> dict:
    element = page.locator(f"#{quantity}")
    attr = {k: element.get_attribute(f"data-{k}") for k in ("estimate", "lower", "upper")}
    out = {k: (None if v == "" else float(v)) for k, v in attr.items()}
    if quantity == "pfs2_median_months":
        out["not_reached_probability"] = float(element.get_attribute("data-not-reached-probability"))
    return out


def test_web_page_end_to_end(server, capfd, caplog, record_property):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not on PATH (CI installs it with apt-get install chromium)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

    host, port = server.servers[0].sockets[0].getsockname()[:2]
    assert host == "127.0.0.1"  # bound to the loopback interface only
    shots = _screenshot_dir()
    url = f"http://127.0.0.1:{port}/"
    requests: list[str] = []
    started = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 2300})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url)
            page.wait_for_selector("#go")

            # 1. a patient: the page's numbers equal predict + summarise exactly
            _fill(page, FORM)
            page.click("#go")
            page.wait_for_selector("#report[data-run='1']", timeout=30_000)
            page.wait_for_selector("#curve img", timeout=30_000)
            page.screenshot(path=shots / "1_patient.png")
            expected = expected_numbers(ROW)
            for q in QUANTITIES:
                assert _on_page(page, q) == expected[q], q
                assert page.inner_text(f"#{q}") == format_quantity(q, expected[q]), q
            any_, severe = logic.icon_counts(expected)
            assert page.locator("#icon_array .rc-icon.rc-severe").count() == severe
            assert page.locator("#icon_array .rc-icon.rc-any").count() == any_ - severe
            assert page.locator("#criteria tbody tr").count() == len(assess(ROW).criteria)
            assert "Table 1" in page.inner_text("#criteria")
            report_sentences = sections(logic._report_numbers(literature_model(), patient_from_form(FORM)))
            assert report_sentences["pfs2"][1] in page.inner_text("#summary_text")
            assert page.is_visible("#caveats")
            assert page.locator("#contraindication_banner").count() == 0
            assert page.locator("#reliability_banner").count() == 0
            page.select_option("#ecog", "2")  # results no longer match the form: say so
            page.wait_for_selector("#stale_note", timeout=10_000)
            page.select_option("#ecog", "1")
            page.wait_for_selector("#stale_note", state="detached", timeout=10_000)

            # 2. invalid input: a readable message naming the field, no crash
            page.fill("#nlr", "0")
            page.click("#go")
            page.wait_for_selector("#input_error", timeout=30_000)
            assert page.inner_text("#input_error").startswith("Please correct the form. NLR:")
            assert page.locator("#report").count() == 0
            page.screenshot(path=shots / "2_invalid_nlr.png")

            # 3. grade 3 myocarditis: the contraindication banner
            _fill(page, MYOCARDITIS)
            page.click("#go")
            page.wait_for_selector("#report[data-run='3']", timeout=30_000)
            banner = page.inner_text("#contraindication_banner")
            assert "contraindicated" in banner and "myocarditis" in banner
            assert page.locator("#criteria [data-status='unfavourable']").count() >= 1
            myo = {**ROW, "tumour_type": "nsclc", "pfs1_months": None, "nlr": None,
                   "prior_irae_grade": 3, "prior_irae_organ": "myocarditis"}
            expected = expected_numbers(myo)
            for q in QUANTITIES:
                assert _on_page(page, q) == expected[q], q
            page.screenshot(path=shots / "3_myocarditis_contraindicated.png")
        finally:
            browser.close()
    elapsed = time.monotonic() - started

    # no network beyond this machine's page; no patient value in any log
    assert requests and all(u.startswith(url) or u.startswith(("data:", "blob:")) for u in requests), \
        [u for u in requests if not u.startswith(url)]
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    for value in ("13.37", "4.21", "7.25"):
        assert value not in logged
    message = f"web screenshots: {shots} ({elapsed:.1f} s in the browser)"
    record_property("screenshots", str(shots))
    with capfd.disabled():
        print(f"\n{message}")
