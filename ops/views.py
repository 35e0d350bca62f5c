"""`/healthz`, `/readyz` and `/metrics` (SPEC §7). Plain Django views, no session or CSRF, never cached."""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache

from core.context import client_address
from ops import metrics, shutdown

_migrations_applied = False  # once true it stays so: a new migration comes with a new deployment (a restart)


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process serves requests; it says nothing about the database or Redis (that is `/readyz`)."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        # A broken connection is dropped, so the next probe connects afresh.
        connection.close_if_unusable_or_obsolete()
        return f"database unreachable: {type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
    return None


def _check_migrations() -> str | None:
    global _migrations_applied
    if _migrations_applied:
        return None
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in plan[:5])
        return f"migrations not applied ({len(plan)}): {names}; run manage.py migrate"
    _migrations_applied = True
    return None


def _check_redis() -> str | None:
    if not settings.REDIS_URL:
        return None
    import redis

    timeout = float(settings.READINESS_TIMEOUT_SECONDS)
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except Exception as error:
        return f"redis unreachable: {type(error).__name__}: {str(error)[:200]}"
    finally:
        client.close()
    return None


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready for traffic: the database answers, migrations are applied, Redis answers (when configured), and the
    process is not shutting down. 503 with every reason that is not so."""
    checks: dict[str, str] = {}
    if shutdown.draining():
        checks["shutdown"] = "shutting down: closing sockets and finishing requests"
    database = _check_database()
    checks["database"] = database or "ok"
    if database is None:
        checks["migrations"] = _check_migrations() or "ok"
    if settings.REDIS_URL:
        checks["redis"] = _check_redis() or "ok"
    reasons = [value for value in checks.values() if value != "ok"]
    status = 503 if reasons else 200
    body = {"status": "unavailable" if reasons else "ready", "checks": checks}
    if reasons:
        body["reason"] = "; ".join(reasons)
    return JsonResponse(body, status=status)


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in settings.METRICS_ALLOWED_IPS:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return networks


def metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return True
    address = client_address(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in _allowed_networks())


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        # No hint of what would be allowed.
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    body, content_type = metrics.exposition(request.headers.get("Accept"))
    return HttpResponse(body, content_type=content_type)
