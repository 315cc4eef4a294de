"""The station's users file: one ``name:scrypt:N:r:p:salt:hash`` line per user (salted scrypt, stdlib hashlib).

Created and updated with ``edge-sdk station passwd --users-file FILE NAME`` (the password is read from the
terminal or stdin, never from a flag). Lines starting with ``#`` are comments. The file is written
atomically with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from pathlib import Path

from edge_sdk.errors import InputError

SCHEME = "scrypt"
#: scrypt cost: 2**14 x 8 x 128 bytes = 16 MiB and ~50 ms per check on a small CPU (slows guessing, not users).
N, R, P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(f"user name {name!r}: expected 1-64 letters, digits, '_', '.', '@' or '-'")
    return name


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=HASH_BYTES
    )


def hash_password(password: str) -> str:
    """The stored form of ``password``: ``scrypt:N:r:p:salt:hash`` with a fresh random salt."""
    if len(password) < MIN_PASSWORD:
        raise InputError(f"password: expected at least {MIN_PASSWORD} characters")
    salt = secrets.token_bytes(SALT_BYTES)
    return f"{SCHEME}:{N}:{R}:{P}:{_b64(salt)}:{_b64(_scrypt(password, salt, N, R, P))}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split(":")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def load_users(path: Path) -> dict[str, str]:
    """``{name: stored hash}`` of a users file; InputError naming the file and line when it is malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"--users-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--users-file {path}: cannot be read ({exc})") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not _NAME.match(name) or len(stored.split(":")) != 6 or not stored.startswith(SCHEME + ":"):
            raise InputError(
                f"--users-file {path}, line {number}: expected NAME:scrypt:N:r:p:SALT:HASH "
                "(write entries with 'edge-sdk station passwd')"
            )
        users[name] = stored
    if not users:
        raise InputError(
            f"--users-file {path}: no users (add one with 'edge-sdk station passwd --users-file {path} NAME')"
        )
    return users


def set_password(path: Path, name: str, password: str) -> bool:
    """Add ``name`` to the users file at ``path`` or change its password (atomic, mode 0600). True if added."""
    check_name(name)
    entry = f"{name}:{hash_password(password)}"
    lines: list[str] = []
    if path.exists():
        load_users(path) if path.stat().st_size else None  # refuse to rewrite a malformed file
        lines = path.read_text(encoding="utf-8").splitlines()
    added = True
    for i, line in enumerate(lines):
        if line.split(":", 1)[0] == name and not line.startswith("#"):
            lines[i], added = entry, False
    if added:
        lines.append(entry)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return added
