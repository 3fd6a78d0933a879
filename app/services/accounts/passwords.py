"""Passwords: argon2id hashes (argon2-cffi's defaults, the RFC 9106 low-memory profile), and
the rules a new password must meet, each refused by name.

The rules follow NIST SP 800-63B: a minimum length, no upper limit short of abuse, no
composition rules, and a refusal of passwords that are common or built from the account's
own email or name.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.errors import BadInput

MIN_LENGTH = 10
MAX_LENGTH = 256  # argon2 takes any length; this only bounds the work an attacker can ask for

# The most common passwords of the public breach corpora (and their obvious variants) that
# meet the length rule; a longer list would belong in a data file.
COMMON = frozenset({
    "1234567890", "12345678910", "0123456789", "1234567891", "1q2w3e4r5t", "qwertyuiop", "1qaz2wsx3edc",
    "password1", "password12", "password123", "password1234", "passw0rd123", "iloveyou12", "qwerty1234",
    "qwerty12345", "abcdefghij", "abc1234567", "aaaaaaaaaa", "1111111111", "0000000000", "9876543210",
    "letmein123", "welcome123", "welcome1234", "administrator", "admin12345", "changeme123", "football123",
    "baseball123", "princess123", "sunshine123", "trustno1234", "superman123", "starwars123", "dragon1234",
    "monkey12345", "michael123", "master12345", "whatever123", "qazwsxedc123", "zaq12wsxcde", "pulsegraph",
    "pulsegraph1", "pulsegraph123", "passwordpassword", "qwertyqwerty", "asdfghjkl1", "asdfghjkl123",
})  # fmt: skip

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if it matches. Without a stored hash (no password set yet, or no such user) a
    dummy hash is still checked, so the answer takes as long either way."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """After the parameters are raised, old hashes are upgraded at the next sign-in."""
    return _hasher.check_needs_rehash(password_hash)


def check_strength(password: str, *, email: str, name: str = "", field: str = "password") -> str:
    """The password if it meets every rule; otherwise BAD_USER_INPUT naming the rule broken."""
    if len(password) < MIN_LENGTH:
        raise BadInput(f"password is too short: the rule 'length' asks for at least {MIN_LENGTH} characters",
                       field=field, rule="length")  # fmt: skip
    if len(password) > MAX_LENGTH:
        raise BadInput(f"password is too long: the rule 'length' allows at most {MAX_LENGTH} characters",
                       field=field, rule="length")  # fmt: skip
    folded = password.casefold()
    if folded in COMMON or len(set(folded)) <= 2:
        raise BadInput("password is too common: the rule 'common' refuses passwords found in breach lists",
                       field=field, rule="common")  # fmt: skip
    if _personal(folded, email=email, name=name):
        raise BadInput("password contains your email or name: the rule 'personal' refuses that",
                       field=field, rule="personal")  # fmt: skip
    return password


def _personal(folded: str, *, email: str, name: str) -> bool:
    local = email.split("@")[0].casefold()
    words = [local, *re.split(r"[^\w]+|_", local), *re.split(r"\s+", name.casefold())]
    return any(len(word) >= 4 and word in folded for word in words)


_DUMMY_HASH = _hasher.hash("a password nobody has: only its verification time matters")
