"""The local web page for clinicians (Shiny for Python).

:func:`create_app` loads the model once — a saved fit (:func:`rechallenge.fitio.load_posterior`,
no PyMC) or the literature model — and returns a :class:`shiny.App`: a form for one
patient and, on "Show prediction", the PFS2 curve with 50%/95% credible bands, the
median / 6- / 12-month PFS2 and irAE recurrence risks with 95% credible intervals, an
icon array, the review's checklist with sources, and the contraindication, reliability
and caveat notes. A request only evaluates the stored posterior draws (NumPy, ~0.1 s);
it never fits.

:func:`serve` runs it with uvicorn on ``127.0.0.1`` (another host only when asked, with a
warning). Form values travel over Shiny's websocket, never in URLs; uvicorn's access log
is off and its log level is ``warning``, so no patient value reaches a log. The page
loads no external resources (Shiny serves its own JavaScript and CSS).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from shiny import App, reactive, render, req, ui

from ..errors import RechallengeError
from . import logic, view
from .logic import CHOICES, FIELD_LABELS, FormError

TITLE = "ICI rechallenge: PFS2 and irAE recurrence for one patient"


def load_model(model_path: str | Path | None = None) -> Any:
    """A saved fit (``.nc``), or the literature model when ``model_path`` is None."""
    if model_path is None:
        from ..literature_model import literature_model

        return literature_model()
    from ..fitio import load_posterior

    return load_posterior(model_path)


def _centres(model: Any) -> tuple[str, ...]:
    import json

    from ..predict import model_spec

    if "centre" not in model_spec(model).pfs2_groups:
        return ()
    levels = json.loads(model.attrs.get("levels") or "{}").get("centre", [])
    return tuple(sorted({str(k).split("/", 1)[-1] for k in levels} - {"all", "unknown"}))


def _select(field: str, selected: str | None = None) -> Any:
    return ui.input_select(field, FIELD_LABELS[field], choices=CHOICES[field], selected=selected)


def _number(field: str, placeholder: str) -> Any:
    return ui.input_text(field, FIELD_LABELS[field], placeholder=placeholder, update_on="blur")


def form_ui(centres: tuple[str, ...] = ()) -> Any:
    """The patient form (input ids = :data:`rechallenge.web.logic.FIELD_LABELS` keys)."""
    centre = ([ui.input_select("centre", FIELD_LABELS["centre"],
                               choices={"": "other / unknown", **{c: c for c in centres}})]
              if centres else [])
    return [
        ui.tags.p({"class": "rc-label"}, "Nothing entered here leaves this computer; blank "
                  "or 'unknown' values are averaged over."),
        _select("tumour_type", "nsclc"),
        _select("ecog", "1"),
        _number("pfs1_months", "blank = unknown"),
        _number("tfi_months", "blank = unknown"),
        _select("liver_mets", ""),
        _number("nlr", "e.g. 3.2 (blank = unknown)"),
        _select("discontinuation_reason", "progression"),
        _select("regimen_class", "pd1_pdl1"),
        _select("prior_irae_grade", "0"),
        _select("prior_irae_organ", "none"),
        ui.panel_conditional("input.prior_irae_grade !== '0'",
                             _select("irae_resolved_grade", ""),
                             _select("steroids_tapered", "")),
        *centre,
        ui.input_action_button("go", "Show prediction", class_="btn-primary w-100"),
    ]


def create_app(model_path: str | Path | None = None) -> App:
    """The Shiny app, with the model loaded once, now.

    Parameters
    ----------
    model_path
        A fit saved by :func:`rechallenge.fitio.save` (NetCDF; its integrity hash is
        checked); ``None`` for the literature model (priors only, no local data).

    Raises
    ------
    RechallengeError
        When the fit file is missing, unreadable or was changed after saving.
    """
    model = load_model(model_path)
    centres = _centres(model)
    source = str(model.attrs.get("source", "fit"))
    reliable = bool(int(model.attrs.get("reliable", 0)))
    fields = list(FIELD_LABELS) if centres else [f for f in FIELD_LABELS if f != "centre"]

    app_ui = ui.page_sidebar(
        ui.sidebar(*form_ui(centres), width=380, open="always"),
        ui.head_content(ui.tags.style(view.CSS), ui.tags.meta(name="robots", content="noindex"),
                        ui.tags.link(rel="icon", href="data:,")),
        ui.tags.p({"class": "rc-label", "id": "model_source"},
                  f"Model: {source}" + ("" if reliable else " — UNRELIABLE fit")),
        ui.output_ui("stale"),
        ui.output_ui("results_top"),
        ui.output_plot("curve", height="380px"),
        ui.output_ui("results"),
        title=TITLE,
        fillable=False,
    )

    def server(input: Any, output: Any, session: Any) -> None:
        def form() -> dict[str, Any]:
            return {f: input[f]() for f in fields}

        @reactive.calc
        @reactive.event(input.go)
        def result() -> tuple[dict[str, Any], Any]:
            snapshot = form()
            try:
                patient = logic.patient_from_form(snapshot, centres=centres)
                return snapshot, logic.compute(model, patient)
            except FormError as exc:
                return snapshot, exc
            except RechallengeError as exc:
                return snapshot, FormError("form", str(exc))

        @render.ui
        def stale() -> Any:
            if not input.go():
                return ui.tags.p({"class": "rc-label"}, "Fill in the form and press "
                                 "'Show prediction'.")
            snapshot, _ = result()
            if form() != snapshot:
                return ui.tags.p({"class": "rc-stale", "id": "stale_note"},
                                 "The form has changed: press 'Show prediction' to update.")
            return None

        @render.ui
        def results_top() -> Any:
            _, r = result()
            if isinstance(r, FormError):
                return view.error_message(str(r))
            return view.banners(r.numbers)

        @render.plot(alt="PFS2 curve of this patient with 50% and 95% credible bands")
        def curve() -> Any:
            _, r = result()
            req(not isinstance(r, FormError))
            return view.curve_figure(r.report)

        @render.ui
        def results() -> Any:
            _, r = result()
            req(not isinstance(r, FormError))
            return view.report_html(r.numbers, run=int(input.go()), with_banners=False)

    return App(app_ui, server)


# --------------------------------------------------------------------------- serving

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_warning(host: str) -> str | None:
    """The warning printed before listening on a non-loopback address (else None)."""
    import ipaddress

    try:
        local = host in LOCAL_HOSTS or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if local:
        return None
    return (f"WARNING: listening on {host}, not only on this computer: anyone who can reach it "
            "can use the page, and what is entered travels unencrypted (plain HTTP). Use this "
            "only on a trusted network.")


def build_server(model_path: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000):
    """A :class:`uvicorn.Server` for the app (not started). ``port=0`` picks a free port.

    Log level ``warning`` and no access log: form values are never logged (they travel
    over the websocket, not in URLs, anyway).
    """
    import uvicorn

    app = create_app(model_path)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="on", server_header=False)
    return uvicorn.Server(config)


def serve(model_path: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the page until interrupted (Ctrl+C); on ``127.0.0.1`` unless told otherwise."""
    warning = host_warning(host)
    if warning:
        print(warning, file=sys.stderr)
    server = build_server(model_path, host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"rechallenge web page: http://{shown}:{port}/  (Ctrl+C to stop)", file=sys.stderr)
    server.run()
