"""ASGI entry point: HTTP (Django views, GraphQL) and WebSocket (GraphQL subscriptions) on one app."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from config import http_limits, ws_writes  # noqa: E402
from graph.asgi import build_application  # noqa: E402  (needs Django set up first)
from ops import asgi as ops_asgi  # noqa: E402
from ops import shutdown  # noqa: E402

http_limits.install()
ws_writes.install()
shutdown.install()

application = ops_asgi.observed(build_application(django_asgi_app))

# Loaded now what the first request would load, then keep the startup heap out of the collector's walks.
from django.urls import get_resolver  # noqa: E402

from config import gc_tuning  # noqa: E402

get_resolver().url_patterns  # noqa: B018  (imports every view module, the GraphQL schema included)
gc_tuning.tune_for_serving()
