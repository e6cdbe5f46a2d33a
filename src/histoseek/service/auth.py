"""Bearer-token checks: every write needs the token; with ``--private`` every read too.

The token comes from the settings, else ``HISTOSEEK_TOKEN``, else the hash stored in the
library folder (``service_token.sha256``, mode 600); on the very first start a new token is
made, its hash stored and the token itself returned once to be printed. The token is never
stored or logged: the audit log names a writer by a short prefix of its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from histoseek.errors import LibraryError
from histoseek.service.errors import ApiError

TOKEN_ENV = "HISTOSEEK_TOKEN"
TOKEN_FILE = "service_token.sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenCheck:
    """The sha256 of the one valid token, and where it came from."""

    digest: str
    origin: str  # "settings", "environment", "library" or "new"

    @property
    def token_id(self) -> str:
        """What the audit log records: 12 hex digits of the hash, never the token."""
        return self.digest[:12]

    def verify(self, given: str) -> bool:
        return hmac.compare_digest(token_hash(given), self.digest)


def resolve_token(library: Path, token: str | None = None,
                  environ: Mapping[str, str] = os.environ) -> tuple[TokenCheck, str | None]:
    """The token check, and the new token when one was made now (to print once)."""
    given = token if token is not None else environ.get(TOKEN_ENV)
    if given is not None:
        if len(given.strip()) < 16:
            raise LibraryError(f"the service token ({TOKEN_ENV}) must be at least 16 characters")
        return TokenCheck(token_hash(given.strip()),
                          "settings" if token is not None else "environment"), None
    stored = library / TOKEN_FILE
    if stored.is_file():
        digest = stored.read_text(encoding="ascii", errors="replace").strip()
        if not _HEX64.fullmatch(digest):
            raise LibraryError(f"{stored}: not a token hash; delete it to make a new token")
        return TokenCheck(digest, "library"), None
    new = secrets.token_urlsafe(32)
    digest = token_hash(new)
    fd = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(digest + "\n")
    return TokenCheck(digest, "new"), new


_bearer = HTTPBearer(auto_error=False, description="the service token (see `histoseek serve`)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _check(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    check: TokenCheck = request.app.state.service.token
    if credentials is None or not credentials.credentials.strip():
        raise ApiError(401, "this endpoint needs the service token: send the header "
                            "'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"})
    if not check.verify(credentials.credentials.strip()):
        raise ApiError(403, "that token is not this service's token")
    return check.token_id


def require_token(request: Request, credentials: Credentials) -> str:
    """Writes: the caller's token id, or 401 (no token) / 403 (wrong token)."""
    return _check(request, credentials)


def read_access(request: Request, credentials: Credentials) -> None:
    """Reads: open, unless the service runs ``--private``."""
    if request.app.state.service.settings.private:
        _check(request, credentials)


WriteToken = Annotated[str, Depends(require_token)]
