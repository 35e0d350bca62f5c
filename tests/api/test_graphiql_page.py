"""GraphiQL in development: served from our own static files (no CDN), subscriptions over the WebSocket."""

from __future__ import annotations

import re
from pathlib import Path

from django.test import Client

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"


def test_graphiql_loads_only_vendored_assets_and_subscribes_over_websocket(db, settings):
    settings.DEBUG = True
    page = Client().get("/graphql", headers={"Accept": "text/html"})
    html = page.content.decode()

    assert page.status_code == 200
    assert "unpkg.com" not in html
    assets = re.findall(r'(?:src|href)="/static/([^"]+)"', html)
    assert len(assets) == 8
    for asset in assets:
        assert (STATIC / asset).is_file(), asset
    assert "graphqlWs.createClient" in html
    assert "connectionParams: authorization ? { authorization } : {}" in html


def test_graphiql_is_not_served_in_production(db, settings):
    settings.DEBUG = False
    page = Client().get("/graphql", headers={"Accept": "text/html"})
    assert "GraphiQL" not in page.content.decode()
