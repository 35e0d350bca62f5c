"""Page shells for the web client. Every piece of data comes from the public GraphQL API at /graphql."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie


@ensure_csrf_cookie
@login_required
def workbench(request: HttpRequest) -> HttpResponse:
    return render(request, "web/app.html", {"page": "workbench"})


@ensure_csrf_cookie
@login_required
def chart(request: HttpRequest, patient_id: str) -> HttpResponse:
    return render(request, "web/chart.html", {"page": "chart", "patient_id": patient_id})


def portal(request: HttpRequest) -> HttpResponse:
    # Patients authenticate with a bearer token kept in sessionStorage; no cookie session is involved.
    return render(request, "web/portal.html", {"page": "portal"})
