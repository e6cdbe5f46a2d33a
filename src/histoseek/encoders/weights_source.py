"""Where an encoder's ``pretrained`` weights are, shared by the timm, open_clip and transformers
loaders: parsing the value, a fast hub check that names the problem, and weight digests that
key the embedding cache.

``pretrained`` is a hub id (``org/name``, ``hf-hub:org/name``, optionally ``@revision``), a
local folder (``local-dir:`` or a plain path) or a single weights file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from histoseek.errors import WeightsNotFoundError
from histoseek.hashing import sha256_files

HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
HF_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")


# --- where the weights are -----------------------------------------------------------------
@dataclass(frozen=True)
class WeightsSource:
    """A parsed ``pretrained`` value: a hub repo (with optional revision), a folder or a file."""

    kind: Literal["hub", "dir", "file"]
    location: str  # repo id for "hub", absolute path otherwise
    revision: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def hub_id(self) -> str:
        """``org/name`` or ``org/name@revision``, the form timm's ``hf-hub:`` prefix takes."""
        return self.location if self.revision is None else f"{self.location}@{self.revision}"


def parse_pretrained(pretrained: str | None, label: str, bare_hub_ids: bool) -> WeightsSource:
    """Decide whether ``pretrained`` is a hub id, a folder or a file; fail on a missing path.

    ``bare_hub_ids`` lets ``org/name`` (no prefix) mean the hub when no such path exists, as
    transformers users expect; timm and open_clip names need the explicit ``hf-hub:`` prefix.
    """
    if not pretrained or not str(pretrained).strip():
        raise WeightsNotFoundError(
            f"encoder '{label}' needs weights: pass pretrained=<hub id or local folder or file>"
        )
    text = str(pretrained).strip()
    if text.startswith(HUB_PREFIX):
        repo, _, revision = text[len(HUB_PREFIX) :].partition("@")
        if not repo:
            raise WeightsNotFoundError(f"'{text}': no repository after '{HUB_PREFIX}'")
        return WeightsSource("hub", repo, revision or None)
    if text.startswith(LOCAL_DIR_PREFIX):
        text = text[len(LOCAL_DIR_PREFIX) :]
    path = Path(text).expanduser()
    if path.is_dir():
        return WeightsSource("dir", str(path.resolve()))
    if path.is_file():
        return WeightsSource("file", str(path.resolve()))
    if bare_hub_ids and not path.is_absolute() and _HUB_ID.fullmatch(text):
        repo, _, revision = text.partition("@")
        return WeightsSource("hub", repo, revision or None)
    raise WeightsNotFoundError(
        f"{path}: no such file or folder with weights for encoder '{label}'; pass an existing "
        f"folder or weights file, or a hub id written as '{HUB_PREFIX}org/name'"
    )


def check_hub_access(source: WeightsSource, filename: str, label: str) -> None:
    """Fail at once, with the next step, when the hub cannot serve ``filename``.

    huggingface_hub retries a failed download 5 times with back-off (~25 s a file offline);
    one HEAD without retries answers at once and tells gated, missing and unreachable apart.
    A file already in the local cache passes without a request, so cached models load offline.
    """
    from huggingface_hub import (
        constants,
        errors,
        get_hf_file_metadata,
        hf_hub_url,
        try_to_load_from_cache,
    )
    from huggingface_hub.errors import (
        GatedRepoError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # huggingface_hub >= 1.0 splits the remote case out of EntryNotFoundError.
    missing_file = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)

    repo, revision = source.location, source.revision
    if isinstance(try_to_load_from_cache(repo, filename, revision=revision), str):
        return
    url = hf_hub_url(repo, filename, revision=revision, endpoint=constants.ENDPOINT)
    try:
        get_hf_file_metadata(url, timeout=10)
        return
    except GatedRepoError as exc:
        error, problem = exc, "is gated and this machine has not been granted access"
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        error, problem = exc, "is not on the Hugging Face hub (wrong id or revision, or private)"
    except missing_file as exc:
        error, problem = exc, f"has no {filename}, so it is not a model this encoder loads"
    except OfflineModeIsEnabled as exc:
        error, problem = exc, "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    except Exception as exc:  # network errors come from httpx, OS and TLS layers alike
        error, problem = exc, f"cannot be fetched: the Hugging Face hub is unreachable ({exc})"
    raise WeightsNotFoundError(
        f"{HUB_PREFIX}{source.hub_id} (encoder '{label}') {problem}. To get the weights: "
        f"accept the model's licence at https://huggingface.co/{repo} if it is gated, log in "
        f"with `hf auth login` (older huggingface_hub: `huggingface-cli login`) or set "
        f"HF_TOKEN, and run with network access; or download the files elsewhere and pass "
        f"pretrained=<local folder or weights file>"
    ) from error


def weight_files(folder: Path, preferred: Sequence[str]) -> list[Path]:
    """The weight file(s) a loader picks in ``folder``: a preferred name, else one suffix class.

    Several files of one suffix (a sharded checkpoint) are all returned, sorted.
    """
    for name in preferred:
        if (folder / name).is_file():
            return [folder / name]
    for suffix in WEIGHT_SUFFIXES:
        found = sorted(p for p in folder.glob(f"*{suffix}") if p.is_file())
        if found:
            return found
    return []


def sha256_version(files: Sequence[Path]) -> str:
    """Digest the weight bytes: same weights, same version, whether from the hub or a copy."""
    return f"sha256:{sha256_files(files)[:16]}"


def local_version(source: WeightsSource, preferred: Sequence[str], label: str) -> str:
    """The digest of the weights a local folder or file holds."""
    files = [source.path] if source.kind == "file" else weight_files(source.path, preferred)
    if not files:
        raise WeightsNotFoundError(
            f"{source.path}: no weights file ({', '.join(WEIGHT_SUFFIXES)}) in this folder for "
            f"encoder '{label}'; put the downloaded weights there or pass the file itself"
        )
    return sha256_version(files)


def hub_version(source: WeightsSource, preferred: Sequence[str]) -> str:
    """Version of a hub model once loaded: the digest of its cached weights, else its id."""
    from huggingface_hub import try_to_load_from_cache

    for name in preferred:
        cached = try_to_load_from_cache(source.location, name, revision=source.revision)
        if isinstance(cached, str):
            return sha256_version([Path(cached)])
    return f"{HUB_PREFIX}{source.hub_id}"


def weights_version(source: WeightsSource, preferred: Sequence[str], label: str) -> str:
    """The version an ``EncoderInfo`` records for weights from ``source``."""
    if source.kind == "hub":
        return hub_version(source, preferred)
    return local_version(source, preferred, label)


def interpolation_name(value: Any) -> str:
    """Map a PIL resample code or a library's name to a mode ``tiles_to_tensor`` can run."""
    value = getattr(value, "value", value)
    if isinstance(value, str):
        name = value.lower()
        return name if name in ("bilinear", "bicubic") else "bicubic"
    return "bilinear" if value == 2 else "bicubic"  # PIL: 2 bilinear, 3 bicubic, others rare


def load_or_raise(
    load: Callable[[], Any], source: WeightsSource, label: str, what: str = "weights"
) -> Any:
    """Run a library loader and turn any failure into one ``WeightsNotFoundError`` line."""
    try:
        return load()
    except WeightsNotFoundError:
        raise
    except Exception as exc:  # loaders raise OSError, RuntimeError, ValueError, AssertionError
        where = f"{HUB_PREFIX}{source.hub_id}" if source.kind == "hub" else source.location
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsNotFoundError(
            f"{where}: cannot load the {what} of encoder '{label}' ({first}); check that the "
            f"folder or file holds this model's files as its hub repository has them"
        ) from exc
