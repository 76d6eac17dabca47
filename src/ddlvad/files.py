"""Writing files safely: every file ddlvad writes goes through here.

:func:`atomic_writer` writes to a temporary file beside the target, flushes and fsyncs it,
then renames it over the target: a crash, Ctrl-C or a full disk leaves the previous file
intact and no temporary file behind; :func:`atomic_path` does the same for writers that take a
file name. :func:`writable_dir` creates an output folder or says, in one line, which flag to
change.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .errors import UserError


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w", *, what: str = "--out", newline: str | None = None
                  ) -> Iterator[IO]:
    """Open a temporary file for writing (``mode`` ``"w"`` or ``"wb"``); on a clean exit of the
    ``with`` block it replaces ``path``. Raises :class:`UserError` naming ``what`` (the flag or
    setting that chose the folder) when the file cannot be written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path} ({exc.strerror or exc}); free disk space or choose another "
                        f"{what}; the previous file is kept") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path, *, what: str = "--out") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a file name (``cv2.VideoWriter``):
    on a clean exit of the ``with`` block the file written there (closed by then) is fsynced and
    replaces ``path``; when none was written, or on an exception, ``path`` is left as it was and
    no temporary file stays behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")  # the suffix tells writers the format
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path} ({exc.strerror or exc}); free disk space or choose another "
                        f"{what}; the previous file is kept") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: str | bytes, *, what: str = "--out") -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically; returns ``path``."""
    with atomic_writer(path, "wb" if isinstance(data, bytes) else "w", what=what) as handle:
        handle.write(data)
    return Path(path)


def writable_dir(path: str | Path, what: str = "--out") -> Path:
    """Create ``path`` (and parents) and check that files can be written in it; else a
    :class:`UserError` naming ``what``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to {path} ({exc.strerror or exc}); choose another {what}") from None
    return path


def safe_name(name: str) -> str:
    """``name`` with every character other than letters, digits, ``-`` and ``_`` replaced by ``_``
    (for file names made from video ids, URLs, scene names)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def read_json(path: str | Path) -> dict:
    """A JSON file as a dict; ``{}`` when it is missing or unreadable (caches: an answer to recompute)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def cached_entry(path: str | Path, key: str, compute: Callable[[], dict]) -> dict:
    """Entry ``key`` of the JSON cache file ``path`` (per-machine probes: the convolution layout, the
    inference engine), computed and written (atomically) when missing. A cache that cannot be
    written is left alone: the answer still holds for this process."""
    path = Path(path)
    known = read_json(path)
    if key not in known:
        known[key] = compute()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(known, indent=1), what="--cache-dir")
        except Exception:  # noqa: BLE001 (an optimisation only)
            pass
    return known[key]
