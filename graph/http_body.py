"""Reading the HTTP request body: every malformed body is a 400 that says what is wrong, never a server error.

strawberry's view assumes well-formed input past `json.loads`: a body that is not UTF-8, a JSON value that is
not an object, JSON nested deeper than the decoder's recursion, or a multipart `map` of another shape raised
Python errors and answered an HTML 500. The view answers each `HTTPException` here in the GraphQL error shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cross_web import DjangoHTTPRequestAdapter, HTTPException


class RequestBody(str):
    """The decoded request body, told apart from multipart fields and query parameters (which are plain str)."""


class RequestAdapter(DjangoHTTPRequestAdapter):
    @property
    def body(self) -> RequestBody:
        try:
            return RequestBody(self.request.body.decode("utf-8"))  # JSON over HTTP is UTF-8 (RFC 8259)
        except UnicodeDecodeError as exc:
            raise HTTPException(400, "The request body is not valid UTF-8; send the JSON encoded as UTF-8.") from exc


def decode_json(data: str | bytes) -> object:
    """`json.loads`, with the failures it leaves to the caller turned into 400s. Raises `json.JSONDecodeError`."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise HTTPException(400, "The JSON is nested too deeply to read; flatten the request.") from exc
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits (Python's int conversion limit)
        raise HTTPException(400, "The JSON holds a number too long to read; send it as a string.") from exc


def require_request_object(decoded: object) -> object:
    """A request body is an operation object (a list is a batch, which the view refuses with its own reason)."""
    if not isinstance(decoded, dict | list):
        raise HTTPException(
            400, 'The request body must be a JSON object such as {"query": "{ me { id } }", "variables": {}}.'
        )
    return decoded


def _place_file(operations: dict[str, Any], path: object, file: object) -> None:
    if not isinstance(path, str) or not path:
        raise HTTPException(
            400, f"Every path in the multipart map must be a string like 'variables.files.0', not {path!r:.40}."
        )
    *parents, last = path.split(".")
    target: Any = operations
    for key in [*parents, last]:
        if isinstance(target, list) and key.isascii() and key.isdigit() and int(key) < len(target):
            parent, target = target, target[int(key)]
            index: int | str = int(key)
        elif isinstance(target, dict) and key in target:
            parent, target = target, target[key]
            index = key
        else:
            raise HTTPException(400, f"The multipart map path {path!r:.80} does not point into the operations.")
    if target is not None:
        raise HTTPException(
            400, f"The multipart map path {path!r:.80} must point at a null placeholder in the operations' variables."
        )
    parent[index] = file


def files_into_operations(operations: object, files_map: object, files: Mapping[str, Any]) -> dict[str, Any]:
    """The GraphQL multipart request spec: `map` is {"<form field>": ["variables.<path>", …]}; each path names a
    null placeholder in `operations`, which the file replaces."""
    if not isinstance(operations, dict):
        raise HTTPException(400, "The multipart 'operations' field must be a JSON object with the query and variables.")
    if not isinstance(files_map, dict) or not all(isinstance(paths, list) for paths in files_map.values()):
        raise HTTPException(
            400, 'The multipart \'map\' field must be a JSON object of lists, e.g. {"0": ["variables.files.0"]}.'
        )
    for field_name, paths in files_map.items():
        if field_name not in files:
            raise HTTPException(400, f"The multipart map names the file field {field_name!r:.40}, which was not sent.")
        for path in paths:
            _place_file(operations, path, files[field_name])
    return operations
