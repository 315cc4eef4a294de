"""Keys for the private result log: a key ring with rotation, and where it comes from.

A key ring holds

* ``secret`` - 32 random bytes that are never rotated. Sub-keys derived from it (HKDF-SHA256) make the
  pseudonyms (HMAC of patient/session/device ids) and the tamper-evidence chain. Rotating it would
  unlink every earlier pseudonym and chain, so it stays for the life of the log.
* ``keys`` - AES-256-GCM data keys by key id. ``active`` names the one new rows are sealed with; older
  keys stay in the ring so older rows can still be read (rotation = add a key, make it active).

Sources, in order of precedence: a key command (its stdout), a key file, the ``EDGE_SDK_LOG_KEY``
environment variable, then the default key file. Each gives either key-ring JSON or one 32-byte master
key (base64 or hex) from which a one-key ring is derived. Only a writer may create the default key file
(mode 0600) on first use; readers never create keys, so a missing key is a clear error.

Key files are never written through a link: a new file is made with ``O_CREAT|O_EXCL|O_NOFOLLOW`` and
mode 0600 (a planted symlink, even a dangling one, is refused), a rotation writes such a new temporary
file and renames it over the old one. A key file is used only when it belongs to the current user and
nobody else can read it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import shlex
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edge_sdk.errors import EdgeSdkError

KEY_ENV = "EDGE_SDK_LOG_KEY"
RING_FORMAT = "edge-sdk-keyring/1"
KEY_BYTES = 32


class LogKeyError(EdgeSdkError):
    """The log key is missing, malformed, or does not match the log."""


def default_key_file() -> Path:
    """``$XDG_CONFIG_HOME/edge-sdk/log-key.json`` (kept apart from the log directory on purpose)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edge-sdk" / "log-key.json"


def _hkdf(secret: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"edge-sdk log {purpose}".encode()).derive(secret)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decode_key(text: str, where: str) -> bytes:
    text = text.strip()
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            raw = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(raw) == KEY_BYTES:
            return raw
    raise LogKeyError(f"{where}: expected a 32-byte key as 64 hex digits or base64, or key-ring JSON")


@dataclass(frozen=True)
class KeyRing:
    """The never-rotated secret plus the data keys by id (``active`` seals new rows)."""

    secret: bytes
    keys: dict[str, bytes]
    active: str
    source: str = "key ring"
    _derived: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise LogKeyError(f"{self.source}: 'secret' must be 32 bytes")
        if self.active not in self.keys:
            raise LogKeyError(f"{self.source}: active key id '{self.active}' is not in 'keys'")
        for kid, key in self.keys.items():
            if len(key) != KEY_BYTES or not kid or len(kid) > 32:
                raise LogKeyError(f"{self.source}: key '{kid}' must be 32 bytes with an id of 1-32 characters")

    def _sub(self, purpose: str) -> bytes:
        if purpose not in self._derived:
            self._derived[purpose] = _hkdf(self.secret, purpose)
        return self._derived[purpose]

    @property
    def chain_key(self) -> bytes:
        """HMAC key of the tamper-evidence chain."""
        return self._sub("chain")

    @property
    def pseudonym_key(self) -> bytes:
        """HMAC key of the pseudonymous ids."""
        return self._sub("pseudonym")

    def data_key(self, key_id: str) -> bytes:
        """The AES-256-GCM key for ``key_id``; a clear error when the ring lacks it."""
        try:
            return self.keys[key_id]
        except KeyError:
            raise LogKeyError(
                f"{self.source}: the log has rows sealed with key id '{key_id}', which this key ring does not hold "
                f"(it holds {sorted(self.keys)}); use the key ring that was active when they were written"
            ) from None

    def secret_check(self) -> bytes:
        """A value stored in the log that proves a later ring has the same secret (reveals nothing)."""
        return hmac.new(self.chain_key, b"edge-sdk secret check", hashlib.sha256).digest()

    def key_check(self, key_id: str) -> bytes:
        """A value stored in the log that proves a later ring holds the same data key for ``key_id``."""
        return hmac.new(_hkdf(self.data_key(key_id), "key check"), key_id.encode(), hashlib.sha256).digest()

    def pseudonym(self, role: str, raw_id: str) -> str:
        """Keyed HMAC of a raw id, domain-separated by role: ``p_``/``s_``/``d_`` + 32 hex digits."""
        mac = hmac.new(self.pseudonym_key, f"{role}\x00{raw_id}".encode(), hashlib.sha256).hexdigest()
        return f"{role[0]}_{mac[:32]}"

    # -- serialisation ---------------------------------------------------------------------------
    def to_json(self) -> str:
        doc = {
            "format": RING_FORMAT,
            "secret": _b64(self.secret),
            "active": self.active,
            "keys": {kid: _b64(key) for kid, key in self.keys.items()},
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_text(cls, text: str, source: str) -> KeyRing:
        """Key-ring JSON, or one master key (hex/base64) turned into a one-key ring."""
        text = text.strip()
        if not text:
            raise LogKeyError(f"{source}: empty; expected key-ring JSON or a 32-byte key")
        if not text.startswith("{"):
            master = _decode_key(text, source)
            kid = "m-" + hashlib.sha256(_hkdf(master, "key id")).hexdigest()[:8]
            return cls(secret=_hkdf(master, "secret"), keys={kid: _hkdf(master, "data")}, active=kid, source=source)
        try:
            doc = json.loads(text)
            if doc.get("format") != RING_FORMAT:
                raise LogKeyError(f"{source}: 'format' must be '{RING_FORMAT}'")
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in dict(doc["keys"]).items()}
            return cls(
                secret=base64.b64decode(doc["secret"], validate=True),
                keys=keys,
                active=str(doc["active"]),
                source=source,
            )
        except LogKeyError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise LogKeyError(f"{source}: not a valid key ring ({exc.__class__.__name__}: {exc})") from None

    @classmethod
    def generate(cls, source: str = "new key ring") -> KeyRing:
        kid = time.strftime("k%Y%m%d-") + os.urandom(3).hex()
        return cls(secret=os.urandom(KEY_BYTES), keys={kid: os.urandom(KEY_BYTES)}, active=kid, source=source)

    def rotated(self) -> KeyRing:
        """A ring with a new active data key; every old key stays for reading."""
        kid = time.strftime("k%Y%m%d-") + os.urandom(3).hex()
        return KeyRing(self.secret, {**self.keys, kid: os.urandom(KEY_BYTES)}, kid, self.source)


_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise LogKeyError(f"key file {path} is a symbolic link; refusing to write a key through it (remove it)")


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` (which must not exist, not even as a dangling link) with mode 0600 and ``text``."""
    try:
        fd = os.open(path, _NEW_FILE_FLAGS, 0o600)
    except FileExistsError:
        raise LogKeyError(f"key file {path} already exists; not overwriting it") from None
    except OSError as exc:
        raise LogKeyError(f"key file {path} cannot be created ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise LogKeyError(f"key file {path} could not be written ({exc.strerror})") from None


def _key_dir(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise LogKeyError(f"key file {path}: its directory cannot be created ({exc.strerror})") from None


def write_key_file(path: Path, ring: KeyRing) -> None:
    """Create the key file ``path`` holding ``ring`` (mode 0600; its directory is made 0700).

    :class:`LogKeyError` when ``path`` already exists or is a symbolic link: a key is never overwritten here.
    """
    _refuse_link(path)
    _key_dir(path)
    _write_new(path, ring.to_json())


def replace_key_file(path: Path, ring: KeyRing) -> None:
    """Atomically replace the key file ``path`` with ``ring`` (rotation): a new 0600 file renamed over it."""
    _refuse_link(path)
    _key_dir(path)
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    _write_new(tmp, ring.to_json())
    try:
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LogKeyError(f"key file {path} could not be replaced ({exc.strerror})") from None


def read_key_file(path: Path) -> KeyRing:
    """The key ring in ``path``; refused unless it belongs to this user and is readable by its owner only."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a planted FIFO must not block: fstat refuses it
    except FileNotFoundError:
        raise LogKeyError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise LogKeyError(f"key file {path} cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        _check_owner(path, st)
        try:
            data = fh.read(1 << 20)
        except OSError as exc:
            raise LogKeyError(f"key file {path} cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LogKeyError(f"key file {path} is not text (not UTF-8); expected key-ring JSON or a key") from None
    return KeyRing.from_text(text, f"key file {path}")


def _check_owner(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise LogKeyError(f"key file {path} is not a regular file")
    if st.st_uid != os.geteuid():
        raise LogKeyError(
            f"key file {path} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}); "
            "refusing a key someone else controls"
        )
    mode = st.st_mode & 0o777
    if mode & 0o077:
        raise LogKeyError(f"key file {path} has mode {mode:o}; it must be readable by its owner only (chmod 600)")


@dataclass(frozen=True)
class KeySource:
    """Where the log key comes from. Empty = ``$EDGE_SDK_LOG_KEY`` or the default key file."""

    key_file: Path | None = None
    key_command: str | None = None

    def load(self, *, create: bool = False) -> KeyRing:
        """The key ring. ``create`` (writers only) makes the key file, mode 0600, when it does not exist."""
        if self.key_command:
            return _run_key_command(self.key_command)
        if self.key_file is not None:
            return self._file(Path(self.key_file), create)
        env = os.environ.get(KEY_ENV)
        if env:
            return KeyRing.from_text(env, f"${KEY_ENV}")
        path = default_key_file()
        if not create and not path.exists():
            raise LogKeyError(
                f"no log key: pass --key-file or --key-command, set ${KEY_ENV}, or create {path} "
                "(`edge-sdk log init-key`); nothing was read or written"
            )
        return self._file(path, create)

    @staticmethod
    def _file(path: Path, create: bool) -> KeyRing:
        if create and not path.exists():  # a dangling planted link is refused by write_key_file
            try:
                write_key_file(path, KeyRing.generate(f"key file {path}"))
            except LogKeyError:
                if not path.exists() or path.is_symlink():  # lost a race with another writer: use its key
                    raise
        return read_key_file(path)


def _run_key_command(command: str) -> KeyRing:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise LogKeyError(f"key_command {command!r} cannot be parsed ({exc}): check its quotes") from None
    if not argv:
        raise LogKeyError("key_command is empty")
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LogKeyError(f"key command {command!r} could not run ({exc})") from None
    stderr = done.stderr.decode("utf-8", "replace").strip()[:200]
    if done.returncode != 0:
        raise LogKeyError(f"key command {command!r} exited with {done.returncode}: {stderr}")
    try:
        text = done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise LogKeyError(f"key command {command!r} printed bytes that are not UTF-8 text") from None
    return KeyRing.from_text(text, f"key command {command!r}")
