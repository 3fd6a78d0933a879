"""Buyer emails: personal data that is never stored, only its keyed hash.

A sale event may say who bought it in `properties.buyerEmail`. Ingestion checks it, trims
and lowercases it, and replaces it with `properties.buyerEmailHash` before the event is
written: an HMAC-SHA256 keyed by the installation's email hash secret
(`PULSEGRAPH_EMAIL_HASH_SECRET`, else a secret kept in the data folder). The worker copies
the hash into `transactions.buyer_email_hash`, where the support search finds the orders of
an exact address (hashed the same way). Nobody can read an address back from the database:
the key is not in it, so even a full copy of it cannot test guesses. Changing the secret
makes earlier hashes unfindable, so keep it with the installation's other secrets.

The hash is the same in every organization (a platform admin's search is one index probe);
a data-subject deletion erases it from the organization's ledger and events.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from app.settings import Settings

BUYER_EMAIL = "buyerEmail"
BUYER_EMAIL_HASH = "buyerEmailHash"
EMAIL_MAX_CHARS = 254
LOCAL_PART_MAX_CHARS = 64
# One @, no blanks, a dot in the domain: what a shop's checkout accepts, not the whole RFC 5322.
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def normalized(value: str) -> str | None:
    """The one spelling of an address that is hashed (trimmed, lowercased); None when the text
    is not an email address."""
    email = value.strip().lower()
    if not 3 <= len(email) <= EMAIL_MAX_CHARS or not email.isprintable() or not _EMAIL_RE.fullmatch(email):
        return None
    if len(email.split("@", 1)[0]) > LOCAL_PART_MAX_CHARS:
        return None
    return email


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"pulsegraph buyer email hash", hashlib.sha256).digest()


def hash_key(settings: Settings) -> bytes:
    """The installation's email secret; installations configured before it existed (and tests
    building their own settings) derive one from the signing secret."""
    return _key(settings.email_hash_secret or f"jwt:{settings.jwt_secret}")


def email_hash(email: str, settings: Settings) -> str:
    """HMAC-SHA256 of the normalized address, 64 hex characters. `email` must be normalized."""
    return hmac.new(hash_key(settings), email.encode(), hashlib.sha256).hexdigest()


def hash_of_query(text: str, settings: Settings) -> str | None:
    """The hash a support query stands for when it is an email address (any case, blanks
    around it); None otherwise."""
    email = normalized(text)
    return email_hash(email, settings) if email is not None else None


def hashed_properties(properties: Mapping[str, Any], settings: Settings) -> tuple[Mapping[str, Any], tuple[str, str] | None]:
    """Event properties with `buyerEmail` replaced by `buyerEmailHash`: (properties, None), or
    (properties, (field, reason)) when the address is not one. A hash sent by the client is
    refused: it could not be told from one the server computed."""
    if BUYER_EMAIL_HASH in properties:
        field = f"properties.{BUYER_EMAIL_HASH}"
        return properties, (field, f"{field} is computed by the server: send properties.{BUYER_EMAIL} instead")
    if BUYER_EMAIL not in properties:
        return properties, None
    value = properties[BUYER_EMAIL]
    rest = {k: v for k, v in properties.items() if k != BUYER_EMAIL}
    if value is None:
        return rest, None
    email = normalized(value) if isinstance(value, str) else None
    if email is None:
        field = f"properties.{BUYER_EMAIL}"
        return properties, (field, f"{field} must be an email address (name@example.com, at most {EMAIL_MAX_CHARS} characters)")
    rest[BUYER_EMAIL_HASH] = email_hash(email, settings)
    return rest, None
