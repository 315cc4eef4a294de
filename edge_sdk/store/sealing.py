"""Sealing one log row and linking it into the tamper-evidence chain.

In the clear per row: ``seq`` (row number), ``ts`` (whole seconds, for retention and ``--since``),
``kind``, the pseudonymous ``session``, ``key_id``, the GCM ``nonce`` and the chain ``link``.
Sealed (AES-256-GCM): the record, its exact timestamp and the patient/device pseudonyms.

* associated data = the row's clear metadata + the log id, so a payload cannot be moved to another row,
  another log, or have its metadata edited without failing authentication;
* ``link = HMAC-SHA256(chain_key, previous link || associated data || nonce || ciphertext)``; the first
  row links to a genesis value derived from the log id. The chain key comes from the key ring, so the
  chain cannot be recomputed after an edit without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge_sdk.store.keys import KeyRing

NONCE_BYTES = 12
TAG_BYTES = 16
_AAD_VERSION = b"edge-sdk-log/1\x00"


@dataclass(frozen=True)
class RowMeta:
    """The clear metadata of one row (everything else is sealed)."""

    seq: int
    ts: int
    kind: str
    session: str
    key_id: str

    def associated_data(self, log_id: bytes) -> bytes:
        text = "\x00".join((self.kind, self.session, self.key_id)).encode()
        return _AAD_VERSION + log_id + struct.pack(">qq", self.seq, self.ts) + text


@dataclass(frozen=True)
class SealedRow:
    meta: RowMeta
    nonce: bytes
    payload: bytes
    link: bytes

    def as_params(self) -> tuple:
        m = self.meta
        return (m.seq, m.ts, m.kind, m.session, m.key_id, self.nonce, self.payload, self.link)


class Sealer:
    """Seals, opens and links rows of one log with one key ring (AESGCM objects cached per key id)."""

    def __init__(self, ring: KeyRing, log_id: bytes) -> None:
        self.ring = ring
        self.log_id = log_id
        self._aead: dict[str, AESGCM] = {}

    def _cipher(self, key_id: str) -> AESGCM:
        if key_id not in self._aead:
            self._aead[key_id] = AESGCM(self.ring.data_key(key_id))
        return self._aead[key_id]

    def genesis(self) -> bytes:
        return hmac.new(self.ring.chain_key, b"genesis\x00" + self.log_id, hashlib.sha256).digest()

    def link(self, previous: bytes, meta: RowMeta, nonce: bytes, payload: bytes) -> bytes:
        mac = hmac.new(self.ring.chain_key, previous, hashlib.sha256)
        mac.update(meta.associated_data(self.log_id))
        mac.update(nonce)
        mac.update(payload)
        return mac.digest()

    def seal(self, previous: bytes, meta: RowMeta, plaintext: bytes) -> SealedRow:
        nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonce per row; rotate keys well before 2**32 rows
        payload = self._cipher(meta.key_id).encrypt(nonce, plaintext, meta.associated_data(self.log_id))
        return SealedRow(meta, nonce, payload, self.link(previous, meta, nonce, payload))

    def open(self, meta: RowMeta, nonce: bytes, payload: bytes) -> bytes | None:
        """The plaintext, or None when the payload, its nonce or its metadata fail authentication."""
        try:
            return self._cipher(meta.key_id).decrypt(nonce, payload, meta.associated_data(self.log_id))
        except (InvalidTag, ValueError):  # ValueError: a nonce of the wrong length (an altered row)
            return None

    def head_mac(self, seq: int, link: bytes) -> bytes:
        return hmac.new(self.ring.chain_key, b"head\x00" + struct.pack(">q", seq) + link, hashlib.sha256).digest()

    def checkpoint_link(
        self, previous: bytes, through_seq: int, head: bytes, purged: int, reason: str, at: int
    ) -> bytes:
        mac = hmac.new(self.ring.chain_key, b"checkpoint\x00" + previous, hashlib.sha256)
        mac.update(struct.pack(">qqq", through_seq, purged, at) + head + reason.encode())
        return mac.digest()
