"""Find the data files that ship with the package, and write files atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_path(*parts: str) -> Path:
    """Path of a bundled file such as ``resource_path("priors", "default.yaml")``.

    An installed wheel carries ``priors/`` and ``models/`` inside the package
    (``rechallenge/_bundled``); an editable install reads them from the repository.
    """
    for base in (_PACKAGE_DIR / "_bundled", _PACKAGE_DIR.parent.parent):
        candidate = base.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"bundled file {'/'.join(parts)} not found")


def read_yaml(path: str | Path, what: str, error: type[Exception]) -> Any:
    """Parse a YAML file; an unreadable file or invalid YAML raises ``error`` naming ``what``
    and the path (e.g. ``read_yaml(p, "model specification", SpecError)``)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}") from None


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, and if writing fails the previous file is
    left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
