"""`searchMessages` (SPEC §6): its connection types and the resolver's table of contents."""

from __future__ import annotations

import strawberry
from strawberry import relay

from core import models, reads
from core.message_search import Position
from graph import guards
from graph.batching import with_siblings
from graph.context import Info
from graph.conversations.orderings import cursor_time
from graph.conversations.types import ConversationType, MessageType, attach_attachments
from graph.ids import decode_id
from graph.pagination import Ordering, cursor_int
from graph.selection import selected_anywhere

SEARCH_ORDER = Ordering(
    fields=("sent_at", "id"),
    descending=True,
    to_json=lambda m: [m.sent_at.isoformat(), m.pk],
    from_json=lambda v: [cursor_time(v[0]), cursor_int(v[1])],
)


@strawberry.type(
    name="SnippetSegment",
    description="A piece of a snippet: plain text, never markup. Show `text` as text (not HTML) and emphasize the "
    "segments with `highlighted: true`, the words that matched the search.",
)
class SnippetSegment:
    text: str
    highlighted: bool


@strawberry.type(name="MessageSearchEdge")
class MessageSearchEdge:
    cursor: str
    node: MessageType
    conversation: ConversationType
    snippet: list[SnippetSegment] = strawberry.field(
        description="The part of the message around its first matching word, as plain-text segments in order "
        "(joined they read as the message text); matching words are the segments with `highlighted: true`, and a "
        "segment '…' marks text left out at either end. Never HTML: a body with markup shows as typed."
    )


@strawberry.type(name="MessageSearchConnection")
class MessageSearchConnection:
    edges: list[MessageSearchEdge]
    page_info: relay.PageInfo


def search_messages(
    info: Info,
    practice_id: strawberry.ID,
    query: str,
    mailbox_id: strawberry.ID | None,
    first: int | None,
    after: str | None,
) -> MessageSearchConnection:
    context = info.context
    practice_pk = decode_id(practice_id, "Practice")
    position = None
    if after is not None:
        sent_at, message_pk = SEARCH_ORDER.position(after)
        position = Position(sent_at=sent_at, message_id=message_pk)
    page = reads.search_messages(
        user=context.require_user(),
        practice_id=practice_pk,
        query=query,
        mailbox_id=decode_id(mailbox_id, "Mailbox") if mailbox_id is not None else None,
        limit=20 if first is None else first,
        after=position,
    )
    guards.note_workbench_staff(context, practice_pk)
    conversations = []
    for hit in page.hits:
        # Found in a subscribed, active mailbox: the viewer reads it as from the mailbox view.
        context.paths.reached([hit.conversation, hit.message], models.AccessSource.MAILBOX)
        guards.note_mailbox_view(context, hit.conversation.mailbox_id)
        conversations.append(hit.conversation)
    with_siblings(context, list({id(c): c for c in conversations}.values()))
    with_siblings(context, list({id(c.mailbox): c.mailbox for c in conversations}.values()))
    with_siblings(context, [hit.message for hit in page.hits])
    if selected_anywhere(info, "attachments"):
        attach_attachments(context, [hit.message for hit in page.hits])
    edges = [
        MessageSearchEdge(
            cursor=SEARCH_ORDER.cursor_of(hit.message),
            node=hit.message,
            conversation=hit.conversation,
            snippet=[SnippetSegment(text=s.text, highlighted=s.highlighted) for s in hit.snippet],
        )
        for hit in page.hits
    ]
    return MessageSearchConnection(
        edges=edges,
        page_info=relay.PageInfo(
            has_next_page=page.has_more,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )
