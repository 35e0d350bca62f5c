"""Global ids are accepted only in the canonical form the API hands out: one spelling per record."""

from __future__ import annotations

import base64

import pytest

from core.errors import NOT_FOUND_MESSAGE
from core.tokens import issue_token
from graph.ids import decode_id
from tests.graphql_client import Api, gid

MAILBOX = "query($id: ID!) { mailbox(id: $id) { name } }"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def spellings(pk: int) -> dict[str, str]:
    """Ids that a loose decoder resolves to the same mailbox as the canonical one."""
    canonical = gid("Mailbox", pk)
    return {
        "space inside the base64": canonical[:4] + " " + canonical[4:],
        "newline inside the base64": canonical[:4] + "\n" + canonical[4:],
        "dot inside the base64": canonical[:4] + "." + canonical[4:],
        "extra padding": canonical + "==",
        "surrounding spaces": f" {canonical} ",
        "space before the digits": b64(f"Mailbox: {pk}"),
        "trailing newline after the digits": b64(f"Mailbox:{pk}\n"),
        "leading zero": b64(f"Mailbox:0{pk}"),
        "plus sign": b64(f"Mailbox:+{pk}"),
        "underscore in the digits": b64(f"Mailbox:0_{pk}"),
        "full-width digits": b64(f"Mailbox:{str(pk).translate(str.maketrans('0123456789', '０１２３４５６７８９'))}"),
        "Arabic-Indic digits": b64(f"Mailbox:{str(pk).translate(str.maketrans('0123456789', '٠١٢٣٤٥٦٧٨٩'))}"),
    }


def test_the_canonical_id_opens_the_mailbox(world):
    answer = Api(issue_token(user=world.subscriber)).data(MAILBOX, {"id": gid("Mailbox", world.billing.pk)})

    assert answer == {"mailbox": {"name": "Billing"}}


@pytest.mark.parametrize("spelling", list(spellings(1)))
def test_any_other_spelling_of_a_real_id_is_not_found(world, spelling):
    # given the id of a mailbox the viewer may open, spelled differently from what the API handed out
    variant = spellings(world.billing.pk)[spelling]
    assert variant != gid("Mailbox", world.billing.pk)

    # when they ask for it
    answer = Api(issue_token(user=world.subscriber)).post(MAILBOX, {"id": variant})

    # then it names no record
    assert [(e["extensions"]["code"], e["message"]) for e in answer["errors"]] == [("NOT_FOUND", NOT_FOUND_MESSAGE)]
    assert answer["data"] == {"mailbox": None}


def test_a_nul_inside_an_id_is_refused_as_unstorable_text_before_any_lookup(world):
    # given a real id with a NUL inside (no string argument may carry one, ids included)
    canonical = gid("Mailbox", world.billing.pk)
    variant = canonical[:4] + "\x00" + canonical[4:]

    # when it is sent, then it is a validation error naming the argument, never a lookup that could differ
    answer = Api(issue_token(user=world.subscriber)).post(MAILBOX, {"id": variant})
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["VALIDATION_ERROR"]
    assert answer["errors"][0]["extensions"]["field"] == "id"


@pytest.mark.parametrize("pk", [1, 9, 10, 12345, 2**63 - 1])
def test_decoding_round_trips_every_canonical_id(pk):
    assert decode_id(gid("Conversation", pk), "Conversation") == pk
