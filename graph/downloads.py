"""The authenticated attachment download: `GET /attachments/<id>/download[?via=MAILBOX|CHART_SUMMARY]`.

Authenticates like the GraphQL endpoint (`Authorization: Bearer <token>`, else the session cookie), then
`core.downloads.open_attachment` applies the message's access rules and audits. Refusals are JSON,
`{"error": {"code", "message"}}`; another practice's or patient's file answers exactly like an unknown id.
The file is streamed as a download that browsers must neither render nor sniff nor cache.
"""

from __future__ import annotations

import unicodedata
import uuid
from urllib.parse import quote

from django.core.files import File
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from core.context import RequestInfo, reset_current_request, set_current_request
from core.downloads import open_attachment
from core.errors import DomainError, ErrorCode, not_signed_in
from core.models import Attachment, Patient, User
from graph.views import client_ip, request_viewer

_STATUS = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.RATE_LIMITED: 429,
}


def error_response(refusal: DomainError) -> JsonResponse:
    response = JsonResponse(
        {"error": {"code": refusal.code.value, "message": refusal.message}}, status=_STATUS.get(refusal.code, 403)
    )
    response["Cache-Control"] = "private, no-store"
    if refusal.code == ErrorCode.UNAUTHENTICATED:
        response["WWW-Authenticate"] = 'Bearer realm="mailbox"'
    return response


def _viewer(request: HttpRequest) -> tuple[User | None, Patient | None]:
    owner = request_viewer(request)  # the same authentication as the GraphQL endpoint
    if owner is None:
        raise not_signed_in()
    return owner.user, owner.patient


def content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII fallback for old clients and the exact UTF-8 name in `filename*`."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = "".join("_" if c in '"\\' or not c.isprintable() else c for c in ascii_name).strip() or "attachment"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _file_response(attachment: Attachment, file: File) -> FileResponse:
    content_type = attachment.content_type
    if content_type.startswith("text/"):
        content_type += "; charset=utf-8"  # text was accepted only as valid UTF-8
    response = FileResponse(file, content_type=content_type)
    response["Content-Disposition"] = content_disposition(attachment.filename)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    # Should a browser ever render it anyway, it gets no script, no plugins, no origin.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@require_safe
def download_attachment(request: HttpRequest, attachment_id: int) -> HttpResponse:
    info = RequestInfo(
        ip=client_ip(request),
        request_id=request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex,
    )
    token = set_current_request(info)
    try:
        user, patient = _viewer(request)
        download = open_attachment(
            attachment_id=attachment_id, acting_user=user, acting_patient=patient, via=request.GET.get("via") or None
        )
        response = _file_response(download.attachment, download.file)
    except DomainError as refusal:
        response = error_response(refusal)
    finally:
        reset_current_request(token)
    response["X-Request-ID"] = info.request_id
    return response
