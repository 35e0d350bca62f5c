"""Attachments (SPEC §2): sniffed types, limits, safe names, nothing left behind by a refusal, the
authenticated download with the message's access rules, and the cleanup of orphans."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from core import actions
from core.attachments import STORAGE_NAME_PATTERN, store_uploads
from core.errors import NOT_SIGNED_IN_MESSAGE, DomainError, ErrorCode
from core.models import (
    PORTAL_SETTING,
    AccessSource,
    Attachment,
    AuditAction,
    AuditEvent,
    Message,
    PracticeSetting,
)
from core.tokens import issue_token
from permissions import require_own_conversation
from tests.attachment_samples import (
    docx_bytes,
    elf_bytes,
    gif_bytes,
    heic_bytes,
    jpeg_bytes,
    pdf_bytes,
    png_bytes,
    upload,
    windows_exe_bytes,
)
from tests.graphql_client import Api, gid


@pytest.fixture
def storage_dir(settings, tmp_path) -> Path:
    location = tmp_path / "attachments"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    }
    return location


def stored_files(location: Path) -> list[Path]:
    return sorted(p for p in location.rglob("*") if p.is_file()) if location.exists() else []


def send(world, *files, **kwargs) -> Message:
    return actions.send_staff_message(
        acting_user=world.subscriber,
        conversation_id=world.conversation.pk,
        body="See attached",
        attachments=list(files),
        **kwargs,
    )


def refusal_of(world, *files) -> DomainError:
    with pytest.raises(DomainError) as refused:
        send(world, *files)
    return refused.value


def download(client: Client, path: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, headers=headers)


def body_of(response) -> bytes:
    # The test client closes the file once the stream is consumed (closing it again would close the database).
    return b"".join(response.streaming_content)


# ---- storing ---------------------------------------------------------------------------------------


def test_pdf_png_jpeg_and_text_are_accepted_with_their_sniffed_types(world, storage_dir):
    files = {
        "report.pdf": pdf_bytes(),
        "xray.png": png_bytes(),
        "photo.jpg": jpeg_bytes(),
        "note.txt": "Grüße, María — see you Tuesday.\n".encode(),
    }

    message = send(world, *(upload(name, content, "application/octet-stream") for name, content in files.items()))

    rows = list(message.attachments.all())
    assert [(a.filename, a.content_type) for a in rows] == [
        ("report.pdf", "application/pdf"),
        ("xray.png", "image/png"),
        ("photo.jpg", "image/jpeg"),
        ("note.txt", "text/plain"),
    ]
    for row, content in zip(rows, files.values(), strict=True):
        assert row.size == len(content)
        assert row.sha256 == hashlib.sha256(content).hexdigest()
        assert row.practice_id == world.practice.pk
        assert (storage_dir / row.storage_name).read_bytes() == content


def test_gif_heic_and_office_documents_are_accepted_from_the_portal(world, storage_dir):
    files = [upload("a.gif", gif_bytes()), upload("b.heic", heic_bytes()), upload("c.docx", docx_bytes())]

    message = actions.send_patient_message(
        acting_patient=world.patient, mailbox_id=world.billing.pk, body="", attachments=files
    )

    assert [a.content_type for a in message.attachments.all()] == [
        "image/gif",
        "image/heic",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ]
    assert {a.practice_id for a in message.attachments.all()} == {world.practice.pk}


def test_a_large_upload_spooled_to_a_temporary_file_is_streamed_into_storage(world, storage_dir):
    content = pdf_bytes() + b"%" + b"x" * (3 * 1024 * 1024) + b"\n%%EOF\n"
    spooled = TemporaryUploadedFile("big.pdf", "application/pdf", len(content), None)
    spooled.write(content)
    spooled.seek(0)

    attachment = send(world, spooled).attachments.get()
    spooled.close()  # the storage moved the temporary file into place, as Django does for large uploads

    assert attachment.size == len(content)
    assert attachment.sha256 == hashlib.sha256(content).hexdigest()
    assert (storage_dir / attachment.storage_name).read_bytes() == content


def test_the_type_comes_from_the_bytes_not_the_name_or_the_client(world, storage_dir):
    message = send(world, upload("scan.pdf", png_bytes(), "application/pdf"))

    attachment = message.attachments.get()
    assert attachment.content_type == "image/png"
    assert attachment.filename == "scan.pdf.png"


@pytest.mark.parametrize("content", [elf_bytes(), windows_exe_bytes()], ids=["elf", "windows-exe"])
def test_an_executable_renamed_scan_pdf_is_refused_and_nothing_is_stored(world, storage_dir, content):
    refusal = refusal_of(world, upload("invoice.pdf", pdf_bytes()), upload("scan.pdf", content, "application/pdf"))

    assert refusal.code == ErrorCode.ATTACHMENT_TYPE_NOT_ALLOWED
    assert "scan.pdf" in refusal.message
    assert not Message.objects.exists()
    assert not Attachment.objects.exists()
    assert stored_files(storage_dir) == []


@pytest.mark.parametrize(
    "content",
    [
        b"<!DOCTYPE html><html><script>alert(1)</script></html>",
        b'\n  <svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        docx_bytes(("readme.txt",)),
        docx_bytes(("[Content_Types].xml", "word/document.xml", "word/vbaProject.bin")),
        "caf\xe9 au lait".encode("latin-1"),
    ],
    ids=["html", "svg", "plain-zip", "macro-docm", "not-utf8"],
)
def test_markup_archives_macros_and_non_utf8_text_are_refused(world, storage_dir, content):
    assert refusal_of(world, upload("file.txt", content)).code == ErrorCode.ATTACHMENT_TYPE_NOT_ALLOWED
    assert stored_files(storage_dir) == []


def test_text_with_a_binary_tail_after_the_sniffed_prefix_is_refused(world, storage_dir):
    content = b"plain words\n" * 10_000 + b"\x7fELF\x00\x00"

    assert refusal_of(world, upload("log.txt", content)).code == ErrorCode.ATTACHMENT_TYPE_NOT_ALLOWED
    assert stored_files(storage_dir) == []


def test_an_oversize_file_is_refused_and_nothing_is_stored(world, storage_dir, settings):
    settings.MAILBOX = {**settings.MAILBOX, "ATTACHMENT_MAX_BYTES": 1024}

    refusal = refusal_of(world, upload("small.pdf", pdf_bytes()), upload("big.txt", b"a" * 1025))

    assert refusal.code == ErrorCode.ATTACHMENT_TOO_LARGE
    assert "big.txt" in refusal.message
    assert not Message.objects.exists()
    assert not Attachment.objects.exists()
    assert stored_files(storage_dir) == []


def test_a_file_exactly_at_the_limit_is_accepted(world, storage_dir, settings):
    settings.MAILBOX = {**settings.MAILBOX, "ATTACHMENT_MAX_BYTES": 1024}

    message = send(world, upload("exact.txt", b"a" * 1024))

    assert message.attachments.get().size == 1024


def test_too_many_files_are_refused_and_nothing_is_stored(world, storage_dir, settings):
    settings.MAILBOX = {**settings.MAILBOX, "ATTACHMENTS_PER_MESSAGE": 2}

    refusal = refusal_of(world, *(upload(f"p{i}.pdf", pdf_bytes()) for i in range(3)))

    assert refusal.code == ErrorCode.VALIDATION_ERROR
    assert "At most 2 attachments" in refusal.message
    assert not Message.objects.exists()
    assert not Attachment.objects.exists()
    assert stored_files(storage_dir) == []


def test_an_empty_file_is_refused(world, storage_dir):
    refusal = refusal_of(world, upload("empty.pdf", b""))

    assert refusal.code == ErrorCode.VALIDATION_ERROR
    assert "empty" in refusal.message


def test_a_path_traversal_name_is_kept_only_as_a_display_name(world, storage_dir, tmp_path):
    message = send(world, upload("../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n"))

    attachment = message.attachments.get()
    assert attachment.filename == "passwd"
    assert attachment.storage_name != "passwd"
    assert re.fullmatch(STORAGE_NAME_PATTERN, attachment.storage_name)
    assert stored_files(storage_dir) == [storage_dir / attachment.storage_name]
    assert not (tmp_path / "etc").exists()


def test_control_and_direction_characters_are_removed_from_names(world, storage_dir):
    message = send(world, upload("inv\u202eoice\x07 \u00a0.txt", b"hello"))

    assert message.attachments.get().filename == "invoice .txt"


def test_a_refused_send_after_storing_leaves_no_file_behind(world, storage_dir):
    with pytest.raises(DomainError) as refused:
        actions.send_staff_message(
            acting_user=world.staff,
            conversation_id=world.conversation.pk,
            body="",
            attachments=[upload("report.pdf", pdf_bytes())],
        )

    assert refused.value.code == ErrorCode.NOT_SUBSCRIBED
    assert stored_files(storage_dir) == []
    assert not Attachment.objects.exists()


def test_a_repeated_client_message_id_keeps_only_the_first_files(world, storage_dir):
    first = send(world, upload("a.pdf", pdf_bytes()), client_message_id="c-1")

    again = send(world, upload("b.png", png_bytes()), client_message_id="c-1")

    assert again.pk == first.pk
    assert [a.filename for a in Attachment.objects.all()] == ["a.pdf"]
    assert stored_files(storage_dir) == [storage_dir / first.attachments.get().storage_name]


# ---- downloading -----------------------------------------------------------------------------------


@pytest.fixture
def sent(world, storage_dir) -> Attachment:
    message = send(world, upload("Befund Müller.pdf", pdf_bytes()))
    return message.attachments.get()


def test_staff_and_the_patient_download_the_same_bytes_with_safe_headers(world, sent):
    client = Client()
    staff_token = issue_token(user=world.clinician)
    patient_token = issue_token(patient=world.patient)

    by_staff = download(client, sent.download_path, staff_token)
    by_patient = download(client, sent.download_path, patient_token)

    for response in (by_staff, by_patient):
        assert response.status_code == 200
        assert response["Content-Type"] == "application/pdf"
        assert response["Content-Length"] == str(sent.size)
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Cache-Control"] == "private, no-store"
        assert response["Content-Disposition"] == (
            "attachment; filename=\"Befund Muller.pdf\"; filename*=UTF-8''Befund%20M%C3%BCller.pdf"
        )
        content = body_of(response)
        assert content == pdf_bytes()
        assert hashlib.sha256(content).hexdigest() == sent.sha256


def test_a_signed_in_browser_session_downloads_too(world, sent):
    client = Client()
    client.force_login(world.staff)

    response = client.get(sent.download_path)

    assert response.status_code == 200
    assert body_of(response) == pdf_bytes()


def test_text_is_served_as_utf8_plain_text(world, storage_dir):
    attachment = send(world, upload("note.txt", "Grüße\n".encode())).attachments.get()

    response = download(Client(), attachment.download_path, issue_token(user=world.subscriber))

    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert body_of(response) == "Grüße\n".encode()


@pytest.mark.parametrize(
    "viewer",
    ["outsider", "other_patient", "outside_patient"],
    ids=["other-practice-user", "other-patient", "patient-of-other-practice"],
)
def test_someone_else_s_attachment_answers_exactly_like_an_unknown_id(world, sent, viewer):
    owner = getattr(world, viewer)
    token = issue_token(user=owner) if viewer == "outsider" else issue_token(patient=owner)
    client = Client()

    refused = download(client, sent.download_path, token)
    unknown = download(client, f"/attachments/{sent.pk + 1000}/download", token)

    assert refused.status_code == unknown.status_code == 404
    assert refused.content == unknown.content
    assert json.loads(refused.content)["error"]["code"] == "NOT_FOUND"


def test_no_token_is_unauthenticated_whether_or_not_the_file_exists(world, sent):
    client = Client()

    existing = client.get(sent.download_path)
    unknown = client.get(f"/attachments/{sent.pk + 1000}/download")
    huge = client.get(
        f"/attachments/{2**70}/download", headers={"Authorization": f"Bearer {issue_token(user=world.staff)}"}
    )

    assert existing.status_code == unknown.status_code == 401
    assert existing.content == unknown.content
    assert json.loads(existing.content)["error"]["code"] == "UNAUTHENTICATED"
    assert huge.status_code == 404


@pytest.mark.parametrize("header", ["Bearer pmm_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer "])
def test_an_invalid_token_is_unauthenticated(world, sent, header):
    response = Client().get(sent.download_path, headers={"Authorization": header})

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(response.content)["error"]["code"] == "UNAUTHENTICATED"


def test_a_file_whose_message_never_committed_is_not_found(world, storage_dir):
    [stored] = store_uploads([upload("lost.pdf", pdf_bytes())])
    orphan = Attachment.objects.create(
        practice=world.practice,
        message=None,
        storage_name=stored.storage_name,
        filename=stored.filename,
        content_type=stored.content_type,
        size=stored.size,
        sha256=stored.sha256,
    )

    response = download(Client(), orphan.download_path, issue_token(user=world.owner))

    assert response.status_code == 404
    assert json.loads(response.content)["error"]["code"] == "NOT_FOUND"


ATTACHMENT_URLS = """
query($id: ID!, $via: AccessSource) {
  conversation(id: $id, via: $via) { messages(last: 5) { edges { node { attachments { url } } } } }
}
"""


def attachment_url(world, user, via: str) -> str:
    answer = Api.as_user(user).data(ATTACHMENT_URLS, {"id": gid("Conversation", world.conversation.pk), "via": via})
    [edge] = answer["conversation"]["messages"]["edges"]
    [attachment] = edge["node"]["attachments"]
    return attachment["url"]


def test_a_url_from_the_mailbox_view_opens_for_a_colleague_reading_the_chart(world, sent):
    # given the url a subscriber was handed by the mailbox view
    url = attachment_url(world, world.subscriber, "MAILBOX")
    assert url.endswith("?via=MAILBOX")

    # when a staff member who is not subscribed (and reads the message from the chart) opens it
    response = download(Client(), url, issue_token(user=world.staff))

    # then the file opens, and the audit row keeps the place the url came from
    assert response.status_code == 200
    assert body_of(response) == pdf_bytes()
    success = AuditEvent.objects.get(operation="downloadAttachment", outcome="SUCCESS")
    assert (success.actor_user_id, success.via) == (world.staff.pk, "MAILBOX")


def test_a_url_from_the_chart_opens_for_a_subscriber_and_after_the_mailbox_is_deactivated(world, sent):
    # given a chart url and a mailbox url, then the mailbox deactivated (its history stays part of the record)
    chart_url = attachment_url(world, world.staff, "CHART_SUMMARY")
    mailbox_url = attachment_url(world, world.subscriber, "MAILBOX")
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)
    client = Client()

    # when the subscriber opens both
    responses = [download(client, url, issue_token(user=world.subscriber)) for url in (chart_url, mailbox_url)]

    # then both open, each audited with its own place
    assert [r.status_code for r in responses] == [200, 200]
    for response in responses:
        body_of(response)
    rows = AuditEvent.objects.filter(operation="downloadAttachment", outcome="SUCCESS").order_by("id")
    assert [row.via for row in rows] == ["CHART_SUMMARY", "MAILBOX"]


def test_a_download_still_needs_the_practice_and_a_known_place(world, sent):
    client = Client()
    outsider = download(client, sent.download_path_for(AccessSource.MAILBOX), issue_token(user=world.outsider))
    nowhere = download(client, f"{sent.download_path}?via=ADMIN", issue_token(user=world.staff))

    assert outsider.status_code == 404
    assert json.loads(outsider.content)["error"]["code"] == "NOT_FOUND"
    assert nowhere.status_code == 400
    assert json.loads(nowhere.content)["error"] == {
        "code": "VALIDATION_ERROR",
        "message": "via must be MAILBOX or CHART_SUMMARY.",
    }


def test_a_patient_cannot_download_while_the_portal_is_off(world, sent):
    PracticeSetting.objects.filter(practice=world.practice, key=PORTAL_SETTING).update(value="F")

    response = download(Client(), sent.download_path, issue_token(patient=world.patient))

    assert response.status_code == 403
    assert json.loads(response.content)["error"]["code"] == "FEATURE_DISABLED"


def test_every_download_and_every_refused_attempt_is_audited(world, sent):
    client = Client()
    body_of(download(client, sent.download_path, issue_token(user=world.clinician)))
    body_of(download(client, sent.download_path, issue_token(patient=world.patient)))
    download(client, sent.download_path, issue_token(user=world.outsider))

    events = AuditEvent.objects.filter(operation="downloadAttachment").order_by("id")
    assert [(e.actor_user_id, e.actor_patient_id, e.via, e.outcome) for e in events] == [
        (world.clinician.pk, None, "CHART_SUMMARY", "SUCCESS"),
        (None, world.patient.pk, "PORTAL", "SUCCESS"),
        (world.outsider.pk, None, "", "NOT_FOUND"),
    ]
    for event in events:
        assert event.action == AuditAction.READ
        assert (event.object_type, event.object_id) == ("Attachment", str(sent.pk))
        assert event.patient_id == world.patient.pk
        assert event.practice_id == world.practice.pk
        assert event.ip == "127.0.0.1"


def test_downloads_are_read_only(world, sent):
    response = Client().post(sent.download_path, headers={"Authorization": f"Bearer {issue_token(user=world.staff)}"})

    assert response.status_code == 405


# ---- cleanup ---------------------------------------------------------------------------------------


def _age(path: Path, minutes: int) -> None:
    past = time.time() - minutes * 60
    os.utime(path, (past, past))


def test_cleanup_removes_files_of_a_send_that_crashed_before_committing(world, storage_dir):
    kept = send(world, upload("kept.pdf", pdf_bytes())).attachments.get()
    [crashed] = store_uploads([upload("crashed.pdf", pdf_bytes())])  # stored, then the process died
    [in_flight] = store_uploads([upload("in-flight.pdf", pdf_bytes())])
    _age(storage_dir / kept.storage_name, 120)
    _age(storage_dir / crashed.storage_name, 120)

    call_command("cleanup_attachments", stdout=io.StringIO())

    assert stored_files(storage_dir) == sorted([storage_dir / kept.storage_name, storage_dir / in_flight.storage_name])


def test_cleanup_with_a_zero_threshold_removes_every_orphan(world, storage_dir):
    store_uploads([upload("crashed.pdf", pdf_bytes())])

    call_command("cleanup_attachments", "--older-than-minutes", "0", stdout=io.StringIO())

    assert stored_files(storage_dir) == []


def test_cleanup_dry_run_lists_but_removes_nothing(world, storage_dir, capsys):
    [crashed] = store_uploads([upload("crashed.pdf", pdf_bytes())])

    call_command("cleanup_attachments", "--older-than-minutes", "0", "--dry-run")

    assert crashed.storage_name in capsys.readouterr().out
    assert stored_files(storage_dir) == [storage_dir / crashed.storage_name]


def test_cleanup_removes_old_rows_that_never_got_a_message(world, storage_dir):
    [stored] = store_uploads([upload("lost.pdf", pdf_bytes())])
    row = Attachment.objects.create(
        practice=world.practice,
        message=None,
        storage_name=stored.storage_name,
        filename=stored.filename,
        content_type=stored.content_type,
        size=stored.size,
        sha256=stored.sha256,
    )
    Attachment.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=2))

    call_command("cleanup_attachments", stdout=io.StringIO())

    assert not Attachment.objects.filter(pk=row.pk).exists()
    assert stored_files(storage_dir) == []


def test_cleanup_leaves_files_it_did_not_name_alone(world, storage_dir):
    storage_dir.mkdir(parents=True)
    foreign = storage_dir / "README.txt"
    foreign.write_text("not ours")
    _age(foreign, 120)

    call_command("cleanup_attachments", "--older-than-minutes", "0", stdout=io.StringIO())

    assert stored_files(storage_dir) == [foreign]


def test_every_refusal_of_nobody_signed_in_says_the_same(world, sent):
    # Given nobody signed in, when they ask for a download, a staff field, a portal field, a thread
    download = json.loads(Client().get(sent.download_path).content)["error"]
    [staff] = Api().post("{ me { id } }")["errors"]
    [portal] = Api().post("{ portalConversations { id } }")["errors"]
    with pytest.raises(DomainError) as thread:
        require_own_conversation(None, world.conversation)

    # then every answer is UNAUTHENTICATED with one wording
    assert {download["code"], staff["extensions"]["code"], portal["extensions"]["code"], thread.value.code} == {
        "UNAUTHENTICATED"
    }
    assert {download["message"], staff["message"], portal["message"], thread.value.message} == {NOT_SIGNED_IN_MESSAGE}
