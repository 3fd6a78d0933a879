"""Standard Webhooks signing (https://www.standardwebhooks.com): `webhook-id`,
`webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`),
with the specification's own reference library, so any receiver's verifier accepts ours."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A signing secret as the specification writes it: `whsec_` and base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signed_headers(*, secret: str, message_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The three headers of one attempt: the id stays the same on every attempt, the timestamp
    is the attempt's, and the signature covers both with the body."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }
