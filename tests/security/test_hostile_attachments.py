"""Allowed types carrying danger (issue #12 point 16): PDFs with JavaScript or launch actions, image/HTML and
image/script polyglots, and Office zip bombs are refused with ATTACHMENT_TYPE_NOT_ALLOWED naming the reason; nothing
of the message or its files is kept. Ordinary files of the same kinds still pass."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from core import actions
from core.errors import DomainError, ErrorCode
from core.models import Attachment, Message
from core.tokens import issue_token
from tests import attachment_samples as samples
from tests.attachment_samples import upload
from tests.graphql_client import gid

pytestmark = pytest.mark.django_db


@pytest.fixture
def storage_dir(settings, tmp_path) -> Path:
    location = tmp_path / "attachments"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    }
    return location


@functools.cache
def one_gib_docx() -> bytes:
    return samples.docx_expanding_to(1 << 30)


def refusal_of(world, *files) -> DomainError:
    with pytest.raises(DomainError) as refused:
        actions.send_staff_message(
            acting_user=world.subscriber, conversation_id=world.conversation.pk, body="See attached", attachments=files
        )
    return refused.value


def assert_nothing_kept(storage_dir: Path) -> None:
    assert not Message.objects.exists()
    assert not Attachment.objects.exists()
    assert not storage_dir.exists() or not [p for p in storage_dir.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (samples.pdf_with_open_action_javascript, "contains JavaScript"),
        (samples.pdf_with_escaped_javascript_name, "contains JavaScript"),
        (samples.pdf_with_javascript_in_an_object_stream, "contains JavaScript"),
        (samples.pdf_with_launch_action, "contains a launch action"),
        (samples.gif_javascript_polyglot, "also reads as a script"),
        (samples.gif_with_script_after_its_end, "after the end of the GIF image"),
        (samples.png_header_with_html, "not a well-formed PNG image"),
        (samples.png_with_html_after_its_end, "after the end of the PNG image"),
        (samples.png_with_script_in_a_text_chunk, "web page or script code"),
        (one_gib_docx, "expands to 1,024 MiB"),
        (lambda: samples.docx_with_parts(5_001), "holds 5,001 parts"),
        (lambda: samples.docx_expanding_to(64 << 20), "times when opened (a compression bomb)"),
    ],
    ids=[
        "pdf-openaction-js",
        "pdf-escaped-js-name",
        "pdf-js-in-object-stream",
        "pdf-launch",
        "gif-js-polyglot",
        "gif-trailing-script",
        "png-header-html",
        "png-trailing-html",
        "png-script-text-chunk",
        "docx-1gib",
        "docx-too-many-parts",
        "docx-ratio",
    ],
)
def test_a_dangerous_file_of_an_allowed_type_is_refused_with_its_reason(world, storage_dir, content, reason):
    # given an ordinary PDF and a hostile file in one message
    files = [upload("statement.pdf", samples.pdf_bytes()), upload("scan.bin", content())]
    # when it is sent, then the hostile file is refused by name, saying why, and nothing is kept
    refusal = refusal_of(world, *files)
    assert refusal.code == ErrorCode.ATTACHMENT_TYPE_NOT_ALLOWED
    assert "'scan.bin' was refused" in refusal.message
    assert reason in refusal.message
    assert_nothing_kept(storage_dir)


@pytest.mark.parametrize(
    "content",
    [
        samples.pdf_bytes,
        samples.pdf_with_plain_open_action,
        samples.png_bytes,
        samples.gif_bytes,
        samples.jpeg_bytes,
        samples.docx_bytes,
        lambda: samples.docx_with_parts(200),
    ],
    ids=["pdf", "pdf-open-at-page", "png", "gif", "jpeg", "docx", "docx-200-parts"],
)
def test_ordinary_files_of_the_same_kinds_still_pass(world, storage_dir, content):
    message = actions.send_staff_message(
        acting_user=world.subscriber,
        conversation_id=world.conversation.pk,
        body="See attached",
        attachments=[upload("file.bin", content())],
    )

    assert message.attachments.count() == 1


def test_the_office_limits_are_settings(world, storage_dir, settings):
    settings.MAILBOX = {**settings.MAILBOX, "OFFICE_MAX_ENTRIES": 10}

    refusal = refusal_of(world, upload("big.docx", samples.docx_with_parts(11)))

    assert "more than the 10 an Office document may" in refusal.message


def test_the_refusal_reaches_a_multipart_client_with_its_code_and_reason(world, storage_dir):
    # given a staff client posting the GraphQL multipart request with a PDF that runs JavaScript
    operations = {
        "query": 'mutation($c: ID!, $files: [Upload!]) { sendMessage(conversationId: $c, body: "Statement", '
        "attachments: $files) { id } }",
        "variables": {"c": gid("Conversation", world.conversation.pk), "files": [None]},
    }
    hostile = SimpleUploadedFile("statement.pdf", samples.pdf_with_open_action_javascript(), "application/pdf")
    # when it is sent over HTTP
    response = Client().post(
        "/graphql",
        {"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.files.0"]}), "0": hostile},
        headers={"Authorization": f"Bearer {issue_token(user=world.subscriber)}"},
    )
    # then the answer carries the code and a message naming the file and the reason
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "ATTACHMENT_TYPE_NOT_ALLOWED"
    assert "'statement.pdf' was refused: it contains JavaScript" in error["message"]
    assert_nothing_kept(storage_dir)
