"""Browser sessions follow the token rules: at most TOKEN_TTL_HOURS from sign-in, and logged off after
TOKEN_IDLE_MINUTES without a request.

Django's own expiry cannot say either: it moves forward every time the session is saved, and it is only saved
when something in it changes. So the session keeps its sign-in time and its last request time, and
`SessionTimeoutMiddleware` ends it (as signing out does) once one of them is too old.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.backends.base import SessionBase
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

SIGNED_IN_AT = "_pmm_signed_in_at"
LAST_SEEN_AT = "_pmm_last_seen_at"
# Refresh the last-request time at most this often, so a busy session is not written on every request (the
# same step as a token's last_used_at).
_TOUCH_EVERY_SECONDS = 60


def _lifetime_seconds() -> int:
    return int(settings.MAILBOX["TOKEN_TTL_HOURS"]) * 3600


def _idle_seconds() -> int:
    return int(settings.MAILBOX["TOKEN_IDLE_MINUTES"]) * 60


def session_is_current(session: SessionBase, now: float | None = None) -> bool:
    """False when the signed-in session is past its lifetime or has been idle too long."""
    now = time.time() if now is None else now
    signed_in_at = session.get(SIGNED_IN_AT)
    if signed_in_at is None:  # signed in before these rules existed: its clocks start now
        return True
    if now - signed_in_at > _lifetime_seconds():
        return False
    idle = _idle_seconds()
    return not (idle and now - session.get(LAST_SEEN_AT, signed_in_at) > idle)


def _touch(session: SessionBase, now: float) -> None:
    if SIGNED_IN_AT not in session:
        session[SIGNED_IN_AT] = now
    if _idle_seconds() and now - session.get(LAST_SEEN_AT, 0) > _TOUCH_EVERY_SECONDS:
        session[LAST_SEEN_AT] = now


@receiver(user_logged_in, dispatch_uid="core.sessions.start_clocks")
def _start_clocks(sender, request: HttpRequest | None, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        now = time.time()
        request.session[SIGNED_IN_AT] = now
        request.session[LAST_SEEN_AT] = now


class SessionTimeoutMiddleware:
    """After AuthenticationMiddleware: signs out a session past its lifetime or idle limit before the view runs,
    so the page redirects to sign-in and the API answers as for an anonymous caller."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        if auth.SESSION_KEY in session:
            now = time.time()
            if session_is_current(session, now):
                _touch(session, now)
            else:
                auth.logout(request)
        return self.get_response(request)
