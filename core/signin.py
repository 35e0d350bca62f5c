"""Password sign-in throttle: failed attempts are counted per account and per caller address (core.ratelimit).

Unlike a token, a password can be guessed, so past either limit every attempt is refused, the right password
included, until the window ends; the password is then not even checked (each check costs an Argon2 hash).
An unknown username is counted like a known one, so the answers say nothing about which accounts exist.
"""

from __future__ import annotations

import hashlib

from core import ratelimit


def _counters(username: str, ip: str | None) -> tuple[tuple[str, str], tuple[str, str]]:
    # Usernames are caller input: hashed, they make well-formed cache keys and keep names out of the cache.
    account = hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]
    return (
        (ratelimit.LOGIN_ACCOUNT_FAILURES, f"account:{account}"),
        (ratelimit.LOGIN_ADDRESS_FAILURES, f"ip:{ip or 'unknown'}"),
    )


def check_password_attempt(*, username: str, ip: str | None) -> None:
    """Refuses with RATE_LIMITED when the account or the address has used up its failed sign-ins."""
    for limit_name, who in _counters(username, ip):
        ratelimit.check(limit_name, who)


def record_password_failure(*, username: str, ip: str | None) -> None:
    for limit_name, who in _counters(username, ip):
        ratelimit.record_failure(limit_name, who)
