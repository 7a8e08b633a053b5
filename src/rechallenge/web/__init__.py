"""The local web page for clinicians: ``rechallenge serve`` (Shiny for Python).

Importing this package is cheap (Shiny, uvicorn and the model load only when the page
is created), so the command line can register :func:`add_serve_parser` on every run.

* :func:`create_app` (in :mod:`rechallenge.web.app`): the :class:`shiny.App`, model
  loaded once at start-up.
* :func:`serve`: run it on ``127.0.0.1:8000`` (default) with uvicorn.
* :func:`add_serve_parser` / :func:`run_serve`: the ``rechallenge serve`` sub-command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_serve_parser", "create_app", "run_serve", "serve"]


def create_app(model_path: str | Path | None = None) -> Any:
    """See :func:`rechallenge.web.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(model_path)


def serve(model_path: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """See :func:`rechallenge.web.app.serve`."""
    from .app import serve as _serve

    _serve(model_path, host=host, port=port)


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``rechallenge serve [--model FIT.nc] [--host H] [--port N]``.

    ``subparsers`` is the object returned by ``ArgumentParser.add_subparsers``; the new
    parser's default ``func`` is :func:`run_serve`.
    """
    p = subparsers.add_parser(
        "serve", help="local web page for one patient (for clinicians)",
        description="Serve the one-patient web page on this computer. Open the printed "
                    "address in a browser; stop with Ctrl+C. Nothing entered leaves the "
                    "machine unless --host exposes it.")
    p.add_argument("--model", type=Path, default=None, metavar="FIT.nc",
                   help="a fit saved by 'rechallenge fit' (default: the literature model, "
                        "no local data)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; "
                        "anything else prints a warning)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.set_defaults(func=run_serve)
    return p


def run_serve(args: argparse.Namespace) -> int:
    """Run the ``serve`` sub-command; returns the exit code (0 after Ctrl+C).

    A bad ``--model`` file raises :class:`rechallenge.errors.RechallengeError` (the CLI
    prints it and exits 2).
    """
    from ..errors import RechallengeError

    if not 0 <= args.port <= 65535:
        raise RechallengeError(f"--port {args.port}: must be between 0 and 65535")
    serve(args.model, host=args.host, port=args.port)
    return 0
