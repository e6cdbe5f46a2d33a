"""Server-side paths a client names (ingest, labels) must stay inside the configured roots.

A path is refused if it holds ``..``, if it resolves (symlinks followed) outside every root,
or, for a folder, if any link inside it points outside: the ingest walks folders itself, so
one link would otherwise let a client index any file the server can read. Confinement is
judged before existence, so a refusal never tells whether a file outside the roots exists.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePath

from histoseek.service.errors import ApiError


def resolve_roots(roots: Sequence[str | Path]) -> tuple[Path, ...]:
    """The roots as resolved, existing folders (a bad one stops the service from starting)."""
    out = []
    for root in roots:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise ValueError(f"--root {root}: not an existing folder")
        out.append(path.resolve(strict=True))
    return tuple(out)


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _outside(raw: str) -> ApiError:
    return ApiError(403, f"{raw}: outside the folders this service may read (its --root "
                         "folders); give a path inside one of them")


def confine(raw: str, roots: Sequence[Path]) -> Path:
    """``raw`` (absolute, or relative to a root: the first root holding it) as a resolved path
    inside the roots; 403 outside them or with ``..``, 404 when it does not exist."""
    if not roots:
        raise ApiError(403, "adding files is disabled: this service was started without --root; "
                            "restart it with `histoseek serve LIB --root DIR` to allow files "
                            "under DIR")
    if not raw or not raw.strip() or "\x00" in raw:
        raise ApiError(400, f"{raw!r} is not a path")
    pure = PurePath(raw)
    if ".." in pure.parts:
        raise ApiError(403, f"{raw}: '..' is not allowed; give a path inside the --root folders")
    candidates = [Path(raw)] if pure.is_absolute() else [root / raw for root in roots]
    for candidate in candidates:
        try:
            resolved = candidate.resolve()  # symlinks of the existing part followed
        except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable folder
            raise ApiError(400, f"{raw}: cannot resolve ({exc})") from None
        if not _inside(resolved, roots):
            raise _outside(raw)
        if resolved.exists():
            if resolved.is_dir():
                check_tree(resolved, roots, raw)
            return resolved
    raise ApiError(404, f"{raw}: no such file or folder in the --root folders")


def check_tree(folder: Path, roots: Sequence[Path], raw: str,
               seen: set[Path] | None = None) -> None:
    """403 if any symlink under ``folder`` leads outside; a link to a folder inside the roots
    is checked in turn (the ingest's walk may follow it), each real folder once."""
    seen = set() if seen is None else seen
    if folder in seen:
        return
    seen.add(folder)
    for parent, dirs, files in os.walk(folder, followlinks=False):
        for name in (*dirs, *files):
            entry = Path(parent) / name
            if not entry.is_symlink():
                continue
            target = entry.resolve()
            if not _inside(target, roots):
                shown = Path(raw) / entry.relative_to(folder)
                raise ApiError(403, f"{shown}: a symbolic link that leads outside the --root "
                                    "folders; remove it or give the files one by one")
            if target.is_dir():
                check_tree(target, roots, raw, seen)
