"""Posting GraphQL over real HTTP requests to the Django view, as a frontend would."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from core.models import Patient, User
from core.tokens import issue_token


class Api:
    def __init__(self, token: str | None = None, client: Client | None = None) -> None:
        self.token = token
        self.client = client or Client()

    @classmethod
    def as_user(cls, user: User) -> Api:
        return cls(issue_token(user=user))

    @classmethod
    def as_patient(cls, patient: Patient) -> Api:
        return cls(issue_token(patient=patient))

    def post(self, query: str, variables: dict | None = None, **headers: str) -> dict[str, Any]:
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        response = self.client.post(
            "/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}),
            content_type="application/json",
            headers=headers,
        )
        assert response.status_code in (200, 400), response.content[:500]
        return response.json()

    def data(self, query: str, variables: dict | None = None) -> dict[str, Any]:
        """The `data` of a successful answer; fails the test with the errors otherwise."""
        answer = self.post(query, variables)
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]

    def error_code(self, query: str, variables: dict | None = None) -> str:
        answer = self.post(query, variables)
        assert answer.get("errors"), f"expected an error, got {answer}"
        return answer["errors"][0]["extensions"]["code"]


def gid(type_name: str, pk: int) -> str:
    from graph.ids import encode_id

    return encode_id(type_name, pk)
