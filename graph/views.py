"""The HTTP GraphQL endpoint: authenticates (bearer token or session), sets the request id, serves GraphiQL
in development."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from strawberry.django.views import GraphQLView
from strawberry.http import GraphQLHTTPResponse, process_result
from strawberry.types import ExecutionResult

from core.context import RequestInfo, reset_current_request, set_current_request
from core.errors import DomainError
from core.tokens import authenticate_token
from graph.context import Context
from graph.errors import format_error


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def authenticate_request(request: HttpRequest, context: Context) -> None:
    raw = bearer_token(request.headers.get("Authorization"))
    if raw is not None:
        try:
            owner = authenticate_token(raw)
        except DomainError as refusal:
            context.auth_error = refusal
            return
        context.user, context.patient, context.token_id = owner.user, owner.patient, owner.token_id
        return
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        context.user = user


def _csrf_refusal(request: HttpRequest) -> HttpResponse | None:
    """Cookie sessions need the CSRF token; bearer-token clients do not carry cookies."""
    if "Authorization" in request.headers or request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    return CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {})


def _as_graphql_error(response: HttpResponse, code: str, message: str | None = None) -> HttpResponse:
    """Requests refused before GraphQL runs (bad body, wrong method, CSRF) still answer in the GraphQL error shape."""
    text = message or response.content.decode(errors="replace").strip()[:300] or "The request could not be read."
    body = {"data": None, "errors": [{"message": text, "extensions": {"code": code}}]}
    return JsonResponse(body, status=response.status_code)


@method_decorator(csrf_exempt, name="dispatch")
class MailboxGraphQLView(GraphQLView):
    multipart_uploads_enabled = True

    def dispatch(self, request, *args, **kwargs):
        refusal = _csrf_refusal(request)
        if refusal is not None:
            return _as_graphql_error(
                refusal, "FORBIDDEN", "Send the CSRF token (X-CSRFToken header) with cookie sessions."
            )
        info = RequestInfo(
            ip=client_ip(request), request_id=request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        )
        token = set_current_request(info)
        try:
            response = super().dispatch(request, *args, **kwargs)
        finally:
            reset_current_request(token)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            response = _as_graphql_error(response, "VALIDATION_ERROR")
        response["X-Request-ID"] = info.request_id
        return response

    def should_render_graphql_ide(self, request) -> bool:
        """GraphiQL in development only, decided per request (not when the URLconf was loaded)."""
        return settings.DEBUG and super().should_render_graphql_ide(request)

    def process_result(self, request: HttpRequest, result: ExecutionResult) -> GraphQLHTTPResponse:
        # Errors raised before the operation hooks ran (e.g. by a parse-time limit) get their code here too.
        if result.errors:
            result.errors = [format_error(error) for error in result.errors]
        return process_result(result)

    def get_context(self, request: HttpRequest, response: HttpResponse) -> Context:
        context = Context(request=request, response=response)
        authenticate_request(request, context)
        return context


def graphql_view():
    from graph.schema import schema

    return MailboxGraphQLView.as_view(
        schema=schema,
        graphql_ide="graphiql",
        multipart_uploads_enabled=True,
    )
