"""Input that used to crash or slip past the rules (issue #12, points 9-12): unstorable and invisible characters,
malformed HTTP bodies, and switch values other than T/F. Each is refused with a code and nothing is written."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from core import actions
from core.errors import DomainError
from core.models import (
    PORTAL_SETTING,
    WORKBENCH_SETTING,
    AuditEvent,
    Mailbox,
    Message,
    Practice,
    PracticeSetting,
)
from core.tokens import issue_token
from tests.attachment_samples import pdf_bytes
from tests.graphql_client import Api, gid
from tests.live_client import MAILBOX_EVENTS, LiveClient

NUL = "a\u0000b"
SURROGATE = "\udc00"
UNSTORABLE = [NUL, SURROGATE, "ok \ud83d"]

SEND = (
    "mutation($c: ID!, $b: String, $cid: String) "
    "{ sendMessage(conversationId: $c, body: $b, clientMessageId: $cid) { id body } }"
)
CREATE_MAILBOX = "mutation($p: ID!, $n: String!) { createMailbox(practiceId: $p, name: $n) { id name } }"
SET_SETTING = (
    "mutation($p: ID!, $k: String!, $v: String!) { setPracticeSetting(practiceId: $p, key: $k, value: $v) "
    "{ key value } }"
)
SEARCH = "query($p: ID!, $q: String!) { searchPatients(practiceId: $p, query: $q) { id } }"


def only_error(answer: dict) -> dict:
    assert answer["data"] is None, answer
    [error] = answer["errors"]
    return error


def written_rows() -> tuple[int, int, int, int]:
    return Message.objects.count(), Mailbox.objects.count(), PracticeSetting.objects.count(), AuditEvent.objects.count()


# ---- point 9: NUL and lone surrogates ------------------------------------------------------------------


@pytest.mark.parametrize("text", UNSTORABLE)
@pytest.mark.parametrize(
    ("field", "query", "variables"),
    [
        ("body", SEND, lambda w, t: {"c": gid("Conversation", w.conversation.pk), "b": t}),
        ("clientMessageId", SEND, lambda w, t: {"c": gid("Conversation", w.conversation.pk), "b": "hi", "cid": t}),
        ("name", CREATE_MAILBOX, lambda w, t: {"p": gid("Practice", w.practice.pk), "n": t}),
        ("key", SET_SETTING, lambda w, t: {"p": gid("Practice", w.practice.pk), "k": t, "v": "x"}),
        ("value", SET_SETTING, lambda w, t: {"p": gid("Practice", w.practice.pk), "k": "color", "v": t}),
        ("query", SEARCH, lambda w, t: {"p": gid("Practice", w.practice.pk), "q": t}),
        ("conversationId", SEND, lambda w, t: {"c": t, "b": "hi"}),
    ],
)
def test_nul_and_lone_surrogates_in_string_variables_are_validation_errors_naming_the_field(
    world, text, field, query, variables
):
    # given a mailbox admin subscribed to Billing, made an owner so every call gets past its access check
    api = Api.as_user(world.mailbox_admin)
    world.mailbox_admin.memberships.filter(practice=world.practice).update(role="OWNER")
    before = written_rows()

    # when the argument carries the character (JSON escapes decode to it)
    error = only_error(api.post(query, variables(world, text)))

    # then it is refused, naming the argument, and nothing was written
    assert error["extensions"] == {"code": "VALIDATION_ERROR", "field": field}
    assert field in error["message"]
    assert "remove it" in error["message"]
    assert written_rows() == before


@pytest.mark.parametrize("escape", ["\\u0000", "\\u{0}"])
def test_a_nul_escape_in_a_document_literal_is_refused_with_the_argument(world, escape):
    api = Api.as_user(world.subscriber)
    query = f'mutation($c: ID!) {{ sendMessage(conversationId: $c, body: "a{escape}b") {{ id }} }}'

    error = only_error(api.post(query, {"c": gid("Conversation", world.conversation.pk)}))

    assert error["extensions"] == {"code": "VALIDATION_ERROR", "field": "body"}
    assert not Message.objects.exists()


def test_a_lone_surrogate_in_a_document_literal_is_a_syntax_validation_error(world):
    api = Api.as_user(world.subscriber)
    query = 'mutation($c: ID!) { sendMessage(conversationId: $c, body: "a\\udc00b") { id } }'

    error = only_error(api.post(query, {"c": gid("Conversation", world.conversation.pk)}))

    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    assert not Message.objects.exists()


def test_nested_unstorable_strings_in_list_variables_are_refused(world):
    api = Api.as_user(world.mailbox_admin)
    query = "mutation($m: ID!, $u: [ID!]!) { setMailboxSubscribers(mailboxId: $m, userIds: $u) { id } }"

    error = only_error(api.post(query, {"m": gid("Mailbox", world.billing.pk), "u": ["fine", NUL]}))

    assert error["extensions"] == {"code": "VALIDATION_ERROR", "field": "userIds"}


@pytest.mark.parametrize("text", UNSTORABLE)
def test_domain_actions_refuse_unstorable_text_for_callers_outside_graphql(world, text):
    # the actions are called by commands and scripts too, which no GraphQL check protects
    calls = [
        lambda: actions.send_staff_message(
            acting_user=world.subscriber, conversation_id=world.conversation.pk, body=text
        ),
        lambda: actions.send_patient_message(
            acting_patient=world.patient, mailbox_id=world.billing.pk, body="hi", client_message_id=text
        ),
        lambda: actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name=text),
        lambda: actions.set_practice_setting(
            acting_user=world.owner, practice_id=world.practice.pk, key="color", value=text
        ),
    ]
    for call in calls:
        with pytest.raises(DomainError) as refused:
            call()
        assert refused.value.code == "VALIDATION_ERROR"
        assert refused.value.extra["field"] in {"body", "clientMessageId", "name", "value"}
    assert not Message.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_a_subscription_variable_with_a_nul_is_refused_with_validation_error(world):
    from channels.db import database_sync_to_async

    token = await database_sync_to_async(issue_token)(user=world.subscriber)
    client = LiveClient()
    assert (await client.open(token))["type"] == "connection_ack"

    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": NUL})
    message = await client.next_for("m")

    assert message["type"] in ("next", "error"), message
    errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
    assert errors[0]["extensions"] == {"code": "VALIDATION_ERROR", "field": "after"}
    await client.close()


def test_the_directory_import_refuses_unstorable_text_with_the_line_and_writes_nothing(db, tmp_path: Path):
    data = {
        "practices": [
            {
                "key": "north",
                "name": "North Clinic",
                "settings": {"color": "a\u0000b"},
                "patients": [
                    {"accountNumber": "A-1", "firstName": "Ma\udc00ría", "lastName": "García",
                     "dateOfBirth": "1980-04-02"},
                ],
            }
        ]
    }  # fmt: skip
    path = tmp_path / "directory.json"
    # ensure_ascii keeps the lone surrogate as a "\udc00" escape, as a hand-edited file could hold it
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")

    with pytest.raises(CommandError) as refused:
        call_command("import_directory", str(path), stdout=StringIO())

    report = str(refused.value)
    assert "setting 'color'" in report
    assert "firstName contains a NUL character or a broken Unicode" in report
    assert not Practice.objects.exists()


# ---- point 10: malformed HTTP bodies ------------------------------------------------------------------


def _assert_graphql_400(response) -> dict:
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Request-ID"]
    error = only_error(response.json())
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    return error


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"query": "{ me { id } }", "x": "\xff\xfe"}', "UTF-8"),
        (b"\xc3\x28", "UTF-8"),
        (b"42", "JSON object"),
        (b"null", "JSON object"),
        (b'"{ me { id } }"', "JSON object"),
        (b"true", "JSON object"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"query": "{ me { id } }", "variables": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (b'{"query": "{ me { id } }", "variables": {"n": ' + b"1" * 5000 + b"}}", "number too long"),
    ],
)
def test_malformed_json_bodies_are_400s_in_the_graphql_error_shape(world, body, says):
    client = Client(headers={"Authorization": f"Bearer {issue_token(user=world.owner)}"})

    response = client.post("/graphql", data=body, content_type="application/json")

    assert says in _assert_graphql_400(response)["message"]


def _multipart(client: Client, operations: object, files_map: object):
    upload = SimpleUploadedFile("statement.pdf", pdf_bytes(), content_type="application/pdf")
    return client.post(
        "/graphql", data={"operations": json.dumps(operations), "map": json.dumps(files_map), "0": upload}
    )


@pytest.mark.parametrize(
    "files_map",
    [
        ["variables.files.0"],
        {"0": "variables.files.0"},
        {"0": [1]},
        {"0": [None]},
        {"0": ["variables.nowhere.3"]},
        {"0": ["variables.files.7"]},
        {"0": ["variables.b"]},
        {"0": ["query"]},
        {"0": ["variables.files.²"]},
        {"1": ["variables.files.0"]},
        "map",
        42,
    ],
)
def test_multipart_maps_of_the_wrong_shape_are_400s_and_send_nothing(world, files_map):
    client = Client(headers={"Authorization": f"Bearer {issue_token(user=world.subscriber)}"})
    operations = {
        "query": "mutation($c: ID!, $b: String, $files: [Upload!]) "
        "{ sendMessage(conversationId: $c, body: $b, attachments: $files) { id } }",
        "variables": {"c": gid("Conversation", world.conversation.pk), "b": "statement", "files": [None]},
    }

    response = _multipart(client, operations, files_map)

    assert "multipart" in _assert_graphql_400(response)["message"]
    assert not Message.objects.exists()


@pytest.mark.parametrize("operations", [42, None, "query", ["x"]])
def test_multipart_operations_that_are_not_an_object_are_400s(world, operations):
    client = Client(headers={"Authorization": f"Bearer {issue_token(user=world.subscriber)}"})

    response = _multipart(client, operations, {"0": ["variables.files.0"]})

    assert "operations" in _assert_graphql_400(response)["message"]


def test_a_file_sent_for_a_text_argument_is_refused_without_naming_python_classes(world):
    client = Client(headers={"Authorization": f"Bearer {issue_token(user=world.subscriber)}"})
    operations = {
        "query": "mutation($c: ID!, $b: String) { sendMessage(conversationId: $c, body: $b) { id } }",
        "variables": {"c": gid("Conversation", world.conversation.pk), "b": None},
    }

    response = _multipart(client, operations, {"0": ["variables.b"]})

    assert response.status_code == 200
    error = only_error(response.json())
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    assert "Upload" in error["message"]
    assert "instance" not in error["message"]
    assert "InMemoryUploadedFile" not in response.content.decode()


# ---- point 11: the switches take T or F ----------------------------------------------------------------


@pytest.mark.parametrize("key", [WORKBENCH_SETTING, PORTAL_SETTING])
@pytest.mark.parametrize("value", ["yes", "TRUE", "t", "f", "1", "0", "", "on"])
def test_the_two_switches_accept_only_t_or_f(world, key, value):
    api = Api.as_user(world.owner)
    before = written_rows()

    error = only_error(api.post(SET_SETTING, {"p": gid("Practice", world.practice.pk), "k": key, "v": value}))

    assert error["extensions"] == {"code": "VALIDATION_ERROR", "field": "value"}
    assert "T (on) or F (off)" in error["message"]
    assert PracticeSetting.objects.get(practice=world.practice, key=key).value == "T"
    assert written_rows() == before


@pytest.mark.parametrize("value", ["F", " T "])
def test_the_switches_still_take_t_and_f_and_other_keys_stay_free_form(world, value):
    api = Api.as_user(world.owner)
    practice = gid("Practice", world.practice.pk)

    switched = api.data(SET_SETTING, {"p": practice, "k": WORKBENCH_SETTING, "v": value})
    free = api.data(SET_SETTING, {"p": practice, "k": "ui.theme", "v": "yes"})

    assert switched["setPracticeSetting"]["value"] == value.strip()
    assert free["setPracticeSetting"]["value"] == "yes"


def test_a_setting_key_with_an_invisible_character_is_refused(world):
    api = Api.as_user(world.owner)

    error = only_error(
        api.post(SET_SETTING, {"p": gid("Practice", world.practice.pk), "k": WORKBENCH_SETTING + "\u200b", "v": "T"})
    )

    assert error["extensions"] == {"code": "VALIDATION_ERROR", "field": "key"}


def test_the_directory_import_refuses_a_switch_that_is_not_t_or_f(db, tmp_path: Path):
    path = tmp_path / "directory.json"
    path.write_text(
        json.dumps({"practices": [{"key": "north", "name": "North", "settings": {WORKBENCH_SETTING: "yes"}}]}),
        encoding="utf-8",
    )

    with pytest.raises(CommandError) as refused:
        call_command("import_directory", str(path), stdout=StringIO())

    assert "T (on) or F (off)" in str(refused.value)
    assert not Practice.objects.exists()


# ---- point 12: invisible characters in names and bodies --------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["Scheduling\u200b", "\ufeffScheduling", "Sched\u200duling", "SCHEDULING\u2060", "Scheduling\u200e"],
)
def test_a_mailbox_name_differing_only_by_invisible_characters_is_a_duplicate(world, name):
    api = Api.as_user(world.mailbox_admin)

    error = only_error(api.post(CREATE_MAILBOX, {"p": gid("Practice", world.practice.pk), "n": name}))

    assert error["extensions"] == {"code": "DUPLICATE_NAME", "field": "name"}
    assert Mailbox.objects.filter(practice=world.practice).count() == 2


def test_renaming_to_a_lookalike_of_another_mailbox_is_a_duplicate(world):
    api = Api.as_user(world.mailbox_admin)
    query = "mutation($m: ID!, $n: String!) { renameMailbox(mailboxId: $m, name: $n) { name } }"

    error = only_error(api.post(query, {"m": gid("Mailbox", world.billing.pk), "n": "\u200bScheduling"}))

    assert error["extensions"]["code"] == "DUPLICATE_NAME"
    world.billing.refresh_from_db()
    assert world.billing.name == "Billing"


def test_a_mailbox_name_is_stored_composed_and_without_invisible_characters(world):
    api = Api.as_user(world.mailbox_admin)

    created = api.data(CREATE_MAILBOX, {"p": gid("Practice", world.practice.pk), "n": "\u200bCafe\u0301\u200b Desk"})

    assert created["createMailbox"]["name"] == "Caf\u00e9 Desk"
    # and the composed spelling is then the same name
    again = only_error(api.post(CREATE_MAILBOX, {"p": gid("Practice", world.practice.pk), "n": "caf\u00e9 desk"}))
    assert again["extensions"]["code"] == "DUPLICATE_NAME"


@pytest.mark.parametrize("name", ["\u200b\u200b", "\ufeff \u2060", " \u200d "])
def test_a_mailbox_name_of_only_invisible_characters_is_empty(world, name):
    api = Api.as_user(world.mailbox_admin)

    error = only_error(api.post(CREATE_MAILBOX, {"p": gid("Practice", world.practice.pk), "n": name}))

    assert error["extensions"] == {"code": "VALIDATION_ERROR", "field": "name"}


@pytest.mark.parametrize("body", ["\u200b\u200b\ufeff", " \u2060\n\u200e ", "\u00ad"])
def test_a_body_of_only_invisible_characters_is_empty(world, body):
    api = Api.as_user(world.subscriber)

    error = only_error(api.post(SEND, {"c": gid("Conversation", world.conversation.pk), "b": body}))

    assert error["extensions"] == {"code": "VALIDATION_ERROR", "field": "body"}
    assert not Message.objects.exists()


def test_a_body_keeps_emoji_joiners_inside_and_is_stored_composed(world):
    api = Api.as_user(world.subscriber)
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"

    sent = api.data(SEND, {"c": gid("Conversation", world.conversation.pk), "b": f"\ufeffCafe\u0301 {family}\u200b"})

    assert sent["sendMessage"]["body"] == f"Caf\u00e9 {family}"


def test_a_nul_in_a_variable_s_default_value_is_refused_like_one_in_an_argument(world):
    # given a document whose variable defaults to a string holding a NUL, and no variables sent
    query = 'mutation($c: ID!, $b: String = "hi\\u0000there") { sendMessage(conversationId: $c, body: $b) { id } }'
    api = Api(issue_token(user=world.subscriber))

    # when it is sent, then it is refused naming the variable, and nothing is stored
    answer = api.post(query.replace("$c: ID!", "$c: ID = " + json.dumps(gid("Conversation", world.conversation.pk))))
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["VALIDATION_ERROR"]
    assert answer["errors"][0]["extensions"]["field"] == "b"
    assert not world.conversation.messages.exists()


@pytest.mark.django_db(transaction=True)
async def test_a_socket_frame_too_deep_or_with_a_number_too_long_closes_with_4400_without_a_traceback(world, caplog):
    from channels.db import database_sync_to_async

    from tests.live_client import Closed

    token = await database_sync_to_async(issue_token)(user=world.subscriber)
    for frame in ("[" * 5000 + "]" * 5000, '{"type": "ping", "n": ' + "1" * 5000 + "}"):
        client = LiveClient()
        assert (await client.open(token))["type"] == "connection_ack"
        await client.ws.send_to(text_data=frame)
        with pytest.raises(Closed) as closed:
            await client.receive()
        assert closed.value.code == 4400
        await client.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]
