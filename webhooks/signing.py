"""Standard Webhooks signatures (https://www.standardwebhooks.com/, "Symmetric" scheme).

A secret is `whsec_` + base64 of 32 random bytes; the HMAC key is the decoded bytes. The
signature of one attempt is `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")),
and `webhook-signature` lists one per live secret, space-separated, so during a rotation a
receiver holding either secret verifies. Our tests verify with the `standardwebhooks`
library, never with this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["SECRET_PREFIX", "headers_for", "new_secret", "signature"]

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers_for(secrets_: list[str], message_id: str, timestamp: int,
                body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body)
                                      for s in secrets_),
    }
