"""The HTTP GraphQL endpoint: authenticates (bearer token or session), sets the request id, serves GraphiQL
in development."""

from __future__ import annotations

from cross_web import HTTPException
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.templatetags.static import static
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from strawberry.django.views import GraphQLView
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, process_result
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from core.context import RequestInfo, client_address, reset_current_request, set_current_request
from core.errors import DomainError
from core.tokens import TokenOwner, authenticate_token
from graph import encoding, http_body
from graph.context import Context
from graph.errors import format_error
from graph.frame_stack import run_on_fresh_stack
from graph.limits import bounded_json
from graph.operations import SUBSCRIPTIONS_OVER_HTTP, operation_choice_message
from ops.requests import request_id_from


def client_ip(request: HttpRequest) -> str | None:
    return client_address(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


def _request_id(request: HttpRequest) -> str:
    """The id the request log line carries (`ops.requests.RequestLogMiddleware`), so both tell one story."""
    return getattr(request, "request_id", None) or request_id_from(request.headers.get("X-Request-ID"))


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def request_viewer(request: HttpRequest) -> TokenOwner | None:
    """Who sends this HTTP request: the bearer token's owner, else the session's user, else None (anonymous).
    A bad or expired token raises UNAUTHENTICATED rather than falling back to the session."""
    raw = bearer_token(request.headers.get("Authorization"))
    if raw is not None:
        return authenticate_token(raw)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return TokenOwner(token_id=None, user=user, patient=None)
    return None


def authenticate_request(request: HttpRequest, context: Context) -> None:
    try:
        owner = request_viewer(request)
    except DomainError as refusal:
        context.auth_error = refusal
        return
    if owner is not None:
        context.user, context.patient, context.token_id = owner.user, owner.patient, owner.token_id


def _csrf_refusal(request: HttpRequest) -> HttpResponse | None:
    """Cookie sessions need the CSRF token. A request without the session cookie (a bearer-token client, or an
    anonymous one) carries no ambient credential a forged request could ride on, so it is not checked: an
    anonymous caller then learns it must sign in (UNAUTHENTICATED), not that it lacks a CSRF token."""
    if "Authorization" in request.headers or request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return None
    return CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {})


# The files strawberry's page loads from unpkg (same versions, same integrity hashes), vendored from npm.
_GRAPHIQL_ASSETS = {
    "react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "react-dom@18.2.0/umd/react-dom.production.min.js": "react-dom.production.min.js",
    "js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "@graphiql/plugin-explorer@1.0.2/dist/style.css": "plugin-explorer.css",
    "graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "@graphiql/plugin-explorer@1.0.2/dist/index.umd.js": "plugin-explorer.umd.js",
}


_GRAPHIQL_WS_FETCHER = """const fetcher = (params, options) => {
        if (/^\\s*(#[^\\n]*\\n\\s*)*subscription\\b/.test(params.query || "")) {
          const headers = (options && options.headers) || {};
          const authorization = headers.Authorization || headers.authorization;
          const client = graphqlWs.createClient({
            url: subscriptionUrl,
            connectionParams: authorization ? { authorization } : {},
          });
          const { query, variables, operationName } = params;
          return client.iterate({ query, variables, operationName });
        }
        return httpFetcher(params, options);
      };
      const httpFetcher = GraphiQL.createFetcher({"""


def _as_graphql_error(response: HttpResponse, code: str, message: str | None = None) -> HttpResponse:
    """Requests refused before GraphQL runs (bad body, wrong method, CSRF) still answer in the GraphQL error shape."""
    text = message or response.content.decode(errors="replace").strip()[:300] or "The request could not be read."
    body = {"data": None, "errors": [{"message": text, "extensions": {"code": code}}]}
    return JsonResponse(body, status=response.status_code)


def _get_refusal() -> HttpResponse:
    """Operations only by POST. A GET runs with the session cookie and no CSRF token, so a cross-site link or image
    would read and search (and leave audit rows) in the user's name; and a query in the URL puts search text and
    ids in browser history and access logs. A bearer token gains nothing from GET either. GraphiQL posts."""
    response = _as_graphql_error(
        HttpResponse(status=405),
        "VALIDATION_ERROR",
        "Send GraphQL operations with POST (JSON or multipart); GET does not run queries.",
    )
    response["Allow"] = "POST"
    return response


@method_decorator(csrf_exempt, name="dispatch")
class MailboxGraphQLView(GraphQLView):
    multipart_uploads_enabled = True
    request_adapter_class = http_body.RequestAdapter

    def dispatch(self, request, *args, **kwargs):
        if request.method == "GET" and "query" in request.GET:
            refused = _get_refusal()
            refused["X-Request-ID"] = _request_id(request)
            return refused
        refusal = _csrf_refusal(request)
        if refusal is not None:
            return _as_graphql_error(
                refusal, "FORBIDDEN", "Send the CSRF token (X-CSRFToken header) with cookie sessions."
            )
        info = RequestInfo(ip=client_ip(request), request_id=_request_id(request))
        token = set_current_request(info)
        try:
            # Parsing, execution and encoding on a data-stack chunk of their own (CPython gh-142183).
            response = run_on_fresh_stack(super().dispatch, request, *args, **kwargs)
        finally:
            reset_current_request(token)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            response = _as_graphql_error(response, "VALIDATION_ERROR")
        response["X-Request-ID"] = info.request_id
        return response

    @property
    def graphql_ide_html(self) -> str:
        """Strawberry's GraphiQL page, with its scripts served from our static files instead of a CDN: the demo
        works offline, and a practice's network does not need to trust unpkg.com."""
        html = get_graphql_ide_html(graphql_ide=self.graphql_ide)
        for cdn_path, local_name in _GRAPHIQL_ASSETS.items():
            html = html.replace(f"https://unpkg.com/{cdn_path}", static(f"web/vendor/graphiql/{local_name}"))
        # Subscriptions go over graphql-transport-ws (this view is synchronous and cannot stream over HTTP), with
        # the Authorization header of GraphiQL's headers tab sent in connection_init.
        ws_script = f'<script src="{static("web/vendor/graphiql/graphql-ws.min.js")}"></script>'
        html = html.replace("</head>", f"{ws_script}\n</head>", 1)
        return html.replace("const fetcher = GraphiQL.createFetcher({", _GRAPHIQL_WS_FETCHER, 1)

    def should_render_graphql_ide(self, request) -> bool:
        """GraphiQL in development only, decided per request (not when the URLconf was loaded)."""
        return settings.DEBUG and super().should_render_graphql_ide(request)

    def parse_json(self, data: str | bytes) -> object:
        decoded = super().parse_json(data)
        # The body must be an operation object; multipart fields and query parameters are checked where used.
        return http_body.require_request_object(decoded) if isinstance(data, http_body.RequestBody) else decoded

    def decode_json(self, data: str | bytes) -> object:
        return http_body.decode_json(data)

    def parse_multipart(self, request) -> dict[str, object]:
        operations = self.parse_json(request.post_data.get("operations", "{}"))
        files_map = self.parse_json(request.post_data.get("map", "{}"))
        return http_body.files_into_operations(operations, files_map, request.files)

    def encode_json(self, data: object) -> str | bytes:
        return bounded_json(data, encoding.dumps, wrapped=False)

    def process_result(self, request: HttpRequest, result: ExecutionResult) -> GraphQLHTTPResponse:
        # Errors raised before the operation hooks ran (e.g. by a parse-time limit) get their code here too.
        if result.errors:
            result.errors = [format_error(error) for error in result.errors]
        return process_result(result)

    def execute_single(
        self, request, request_adapter, sub_response, context, root_value, request_data
    ) -> ExecutionResult:
        """Strawberry's, minus subscriptions: this synchronous view cannot run their resolvers (they answered
        INTERNAL_SERVER_ERROR), so they are refused before execution; the 400 becomes VALIDATION_ERROR in
        `dispatch`, with messages saying what to send instead."""
        method = request_adapter.method
        allowed = OperationType.from_http(method) - {OperationType.SUBSCRIPTION}
        if not self.allow_queries_via_get and method == "GET":
            allowed -= {OperationType.QUERY}
        try:
            return self.schema.execute_sync(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as error:
            raise HTTPException(400, operation_choice_message(error.operation_name))
        except InvalidOperationTypeError as error:
            if error.operation_type == OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTIONS_OVER_HTTP)
            raise HTTPException(400, error.as_http_error_reason(method))
        except MissingQueryError:
            raise HTTPException(400, "Send the GraphQL document in query.")
        finally:
            context.release()

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
