"""The staff sign-in page: Django's login view with the password throttle of core.signin in front."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpRequest, HttpResponse

from core import signin
from core.context import RequestInfo, client_address, reset_current_request, set_current_request
from core.errors import DomainError


def _caller_ip(request: HttpRequest) -> str | None:
    return client_address(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


class ThrottledAuthenticationForm(AuthenticationForm):
    def clean(self) -> dict[str, Any]:
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if not username or not password:
            return super().clean()
        ip = _caller_ip(self.request)
        try:
            signin.check_password_attempt(username=username, ip=ip)
        except DomainError as refusal:
            raise ValidationError(refusal.message, code="rate_limited") from None
        try:
            return super().clean()
        except ValidationError:
            signin.record_password_failure(username=username, ip=ip)
            raise


class SignInView(LoginView):
    form_class = ThrottledAuthenticationForm
    template_name = "web/login.html"
    next_page = "/"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Rate limits count only inside a request the transport has identified (core.ratelimit).
        token = set_current_request(RequestInfo(ip=_caller_ip(request)))
        try:
            return super().post(request, *args, **kwargs)
        finally:
            reset_current_request(token)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        if form.has_error(NON_FIELD_ERRORS, "rate_limited"):
            context = self.get_context_data(form=form, throttled=form.non_field_errors()[0])
            return self.render_to_response(context, status=429)
        return super().form_invalid(form)
