"""Encryption at rest for tenants' stored provider API keys (DESIGN §5.2).

Keys come from `AGENT33_SECRET_KEYS`: a list of Fernet keys (the settings read it
comma-separated). The FIRST key encrypts; EVERY key decrypts (`cryptography`'s MultiFernet),
so rotation needs no downtime: put a new key first, keep the old ones after it, run
`manage.py rotate_provider_keys`, then drop the old ones.

When the setting is empty:
- DEBUG: a key derived from SECRET_KEY (HKDF-SHA256) is used, with a warning logged once per
  process, so a local run works without configuration. `rotate_provider_keys` always also
  tries this derived key, so setting AGENT33_SECRET_KEYS later and rotating once moves the
  rows over.
- otherwise (production): storing or reading a key raises `EncryptionUnavailable` (HTTP 503,
  code `encryption_not_configured`) naming the setting. Nothing is ever stored in the clear.

Nothing here logs or puts plaintext (or key material) into an exception message.
"""

from __future__ import annotations

import base64
import logging
import threading
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core import checks

from agent33.errors import DomainError

__all__ = [
    "GENERATE_HINT",
    "SETTING",
    "EncryptionUnavailable",
    "UndecryptableKey",
    "configured_keys",
    "debug_fallback_key",
    "decrypt",
    "encrypt",
    "is_current",
    "require_available",
    "rotate",
]

logger = logging.getLogger("agent33.multimodal")

SETTING = "AGENT33_SECRET_KEYS"
GENERATE_HINT = (
    "python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\""
)
_HKDF_INFO = b"agent33 multimodal provider keys v1"


class EncryptionUnavailable(DomainError):
    """Stored keys cannot be encrypted or decrypted because the server is not configured for
    it: a server-side problem, hence 503, with the setting named so an operator can fix it."""

    status_code = 503
    code = "encryption_not_configured"


class UndecryptableKey(Exception):
    """A stored ciphertext matches none of the configured keys (its key was removed from
    AGENT33_SECRET_KEYS before `rotate_provider_keys` ran), or it was tampered with."""


def configured_keys() -> list[str]:
    """The setting as a list (a comma-separated string is accepted too)."""
    raw = getattr(settings, SETTING, None) or []
    if isinstance(raw, str):
        raw = raw.split(",")
    return [str(item).strip() for item in raw if str(item).strip()]


def debug_fallback_key(secret_key: str | None = None) -> bytes:
    """A Fernet key derived from SECRET_KEY: stable across restarts, unique per deployment."""
    material = (secret_key if secret_key is not None else settings.SECRET_KEY).encode()
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        material
    )
    return base64.urlsafe_b64encode(derived)


@lru_cache(maxsize=16)
def _fernet_for(keys: tuple[str | bytes, ...]) -> MultiFernet:
    fernets = []
    for index, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # The key itself must not appear in the message; its position is enough.
            raise EncryptionUnavailable(
                f"{SETTING} entry {index} of {len(keys)} is not a valid Fernet key "
                f"(32 url-safe base64-encoded bytes); generate one with: {GENERATE_HINT}",
                code="encryption_key_invalid",
            ) from None
    return MultiFernet(fernets)


_warned_lock = threading.Lock()
_warned: set[str] = set()


def _warn_fallback_once() -> None:
    with _warned_lock:
        if settings.SECRET_KEY in _warned:
            return
        _warned.add(settings.SECRET_KEY)
    logger.warning(
        "%s is empty: provider keys are encrypted with a key derived from SECRET_KEY "
        "(DEBUG only). Set %s before storing real keys in production; generate one with: %s",
        SETTING, SETTING, GENERATE_HINT,
    )


def _active_keys() -> tuple[str | bytes, ...]:
    keys = configured_keys()
    if keys:
        return tuple(keys)
    if settings.DEBUG:
        _warn_fallback_once()
        return (debug_fallback_key(),)
    raise EncryptionUnavailable(
        f"Provider keys cannot be stored or read: {SETTING} is not set on the server. An "
        f"operator must set {SETTING} (comma-separated Fernet keys, the first one encrypts); "
        f"generate one with: {GENERATE_HINT}"
    )


def require_available() -> None:
    """Raise EncryptionUnavailable now (before any write) if keys cannot be encrypted."""
    _fernet_for(_active_keys())


def encrypt(plaintext: str) -> str:
    """Fernet token (ASCII) for `plaintext`, under the first configured key."""
    return _fernet_for(_active_keys()).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _fernet_for(_active_keys()).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise UndecryptableKey(
            f"the stored key cannot be decrypted with any key in {SETTING}"
        ) from None


def is_current(token: str) -> bool:
    """Whether `token` is already encrypted under the first (encrypting) key."""
    keys = _active_keys()
    try:
        _fernet_for(keys[:1]).decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True


def rotate(token: str, *, extra_decrypt_keys: tuple[str | bytes, ...] = ()) -> str:
    """Re-encrypt `token` under the first configured key. `extra_decrypt_keys` are tried for
    decryption only (the rotation command passes the DEBUG fallback key)."""
    keys = _active_keys()
    decrypting = _fernet_for(keys + tuple(k for k in extra_decrypt_keys if k not in keys))
    try:
        plaintext = decrypting.decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError):
        raise UndecryptableKey(
            f"the stored key cannot be decrypted with any key in {SETTING}"
        ) from None
    return _fernet_for(keys).encrypt(plaintext).decode("ascii")


@checks.register(checks.Tags.security)
def check_secret_keys(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A malformed AGENT33_SECRET_KEYS is an error at start-up, not at the first PUT."""
    keys = configured_keys()
    for index, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return [checks.Error(
                f"{SETTING} entry {index} of {len(keys)} is not a valid Fernet key.",
                hint=f"Generate one with: {GENERATE_HINT}",
                id="multimodal.E001",
            )]
    return []



@checks.register(checks.Tags.security)
def check_private_networks(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A malformed AGENT33_OUTBOUND_PRIVATE_NETWORKS (or its old name,
    AGENT33_PROVIDER_PRIVATE_NETWORKS) is an error at start-up."""
    from django.conf import settings

    from agent33.networks import LEGACY_OUTBOUND_SETTING, OUTBOUND_SETTING

    from .network import parse_networks

    for name in (OUTBOUND_SETTING, LEGACY_OUTBOUND_SETTING):
        try:
            parse_networks(getattr(settings, name, "") or "")
        except ValueError as exc:
            return [checks.Error(f"{name}: {exc}.",
                                 hint="Comma-separated CIDRs, e.g. 10.0.0.0/8,fd00::/8",
                                 id="multimodal.E002")]
    return []
