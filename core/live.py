"""Live streams read from the event log (the `Event` outbox), never from the publish itself.

A publish on the channel layer only wakes a stream up; the stream then reads every logged event after the
last one it delivered and checks access. So a lost publish is repaired by the next wake-up (or the periodic
re-check), and a client resuming with `after: cursor` gets exactly the events it missed, in log order. What an
event shows of its objects is executed per cohort of subscribers by `graph.live_exec`, as over HTTP.
"""

from __future__ import annotations

import binascii
import bisect
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Max, Q
from django.utils import timezone

from core import audit, cursors
from core.errors import DomainError, ErrorCode, not_signed_in
from core.events import conversation_group, patient_group, practice_group
from core.models import AccessSource, AuditAction, Event, Patient, User
from core.tokens import INVALID_TOKEN_MESSAGE, token_is_valid, valid_session_keys
from permissions.live import (
    ACCESS_CHANGES,
    PRACTICE_WIDE_ACCESS,
    conversation_stream_visible,
    mailbox_stream_visible,
    portal_event_filter,
    portal_event_matches,
    require_conversation_stream,
    require_mailbox_stream,
    require_portal_stream,
    stream_conversation,
    subscribed_active_mailbox_ids,
)

BATCH_SIZE = 100
_CURSOR_PREFIX = "event:"


class StreamKind:
    MAILBOX = "mailboxEvents"
    CONVERSATION = "conversationEvents"
    PORTAL = "portalEvents"


@dataclass
class LiveStream:
    """One subscription's view of the log: whose it is, which part of the log, which groups wake it."""

    kind: str
    practice_id: int
    groups: list[str]
    user: User | None = None
    patient: Patient | None = None
    token_id: int | None = None
    conversation_id: int | None = None
    via: AccessSource = AccessSource.MAILBOX
    # The browser session a cookie-authenticated socket signed in with (signing out ends the stream).
    session_key: str | None = None
    # How the subscription executes its events (`graph.live_exec`), worked out at its first event.
    live_plan: object = field(default=None, repr=False, compare=False)

    def log_filter(self) -> Q:
        if self.kind == StreamKind.CONVERSATION:
            return Q(conversation_id=self.conversation_id)
        if self.kind == StreamKind.PORTAL:
            return portal_event_filter(self.patient)
        return Q(practice_id=self.practice_id)

    def in_log(self, event: Event) -> bool:
        """`log_filter` for a row of the practice log already in memory."""
        if self.kind == StreamKind.CONVERSATION:
            return event.conversation_id == self.conversation_id
        if self.kind == StreamKind.PORTAL:
            return portal_event_matches(self.patient, event)
        return True

    def access_key(self) -> tuple:
        """Streams with equal keys get the same access decision (same viewer and credential, same place)."""
        return (*self.cohort_key(), self.token_id, self.session_key)

    def cohort_key(self) -> tuple:
        """Subscribers whose events execute to the same answer (same viewer, same place, same stream)."""
        return (
            self.kind,
            self.practice_id,
            self.user.pk if self.user else None,
            self.patient.pk if self.patient else None,
            self.conversation_id,
            self.via,
        )

    def shared_key(self) -> tuple:
        """`cohort_key` without the staff viewer: for selections whose every field answers alike for all the
        viewers this stream admits to an event (`graph.live_exec.VIEWER_INDEPENDENT`)."""
        return (
            self.kind,
            self.practice_id,
            "staff" if self.user else None,
            self.patient.pk if self.patient else None,
            self.conversation_id,
            self.via,
        )

    def concerned_by(self, change: Event) -> bool:
        """Whether an access-changing event of this practice may change this stream's access decision."""
        if change.kind in PRACTICE_WIDE_ACCESS or not (change.user_ids or change.patient_id):
            return True
        if self.user is not None and self.user.pk in (change.user_ids or ()):
            return True
        return self.patient is not None and self.patient.pk == change.patient_id


@dataclass
class Batch:
    items: list[Event] = field(default_factory=list)
    # The access decision the items were filtered with (a mailbox stream: its subscribed, active mailboxes).
    access: frozenset[int] = frozenset()
    last_id: int = 0
    # The log had more rows than one batch: read again without waiting for a wake-up.
    more: bool = False


# ---- cursors ---------------------------------------------------------------------------------------


def encode_cursor(event_id: int) -> str:
    return cursors.encode(f"{_CURSOR_PREFIX}{event_id}")


def _invalid_cursor() -> DomainError:
    days = settings.MAILBOX["EVENT_RETENTION_DAYS"]
    return DomainError(
        ErrorCode.VALIDATION_ERROR,
        f"This cursor is unknown or older than the event log keeps ({days} days): refetch the data over HTTP, "
        "then subscribe again without `after`.",
    )


def decode_cursor(cursor: str) -> int:
    try:
        text = cursors.decode(cursor).decode()
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        event_id = int(text.removeprefix(_CURSOR_PREFIX))
    except (ValueError, binascii.Error, UnicodeError):
        raise _invalid_cursor()
    if event_id <= 0:
        raise _invalid_cursor()
    return event_id


def start_position(stream: LiveStream, after: str | None) -> tuple[int, int]:
    """The id after which the stream delivers, and the newest logged id of the practice now. Call it after
    joining the groups, so nothing falls in between.

    Without a cursor: the newest logged event of the practice (live only). With one: its event must still be
    in the log (pruning removes oldest first, so everything after it is still there) and be of this practice.
    The first read must reach the newest id, so a resume replays at once whatever this process read before.
    """
    newest = Event.objects.filter(practice_id=stream.practice_id).aggregate(newest=Max("id"))["newest"] or 0
    if after is None:
        return newest, newest
    event_id = decode_cursor(after)
    if not Event.objects.filter(pk=event_id, practice_id=stream.practice_id).exists():
        raise _invalid_cursor()
    return event_id, newest


# ---- opening a stream (checked and audited once) ---------------------------------------------------


def open_mailbox_stream(*, user: User | None, token_id: int | None, practice_id: int) -> LiveStream:
    require_mailbox_stream(user, practice_id)
    audit.record(
        operation="mailboxEvents",
        action=AuditAction.READ,
        practice=practice_id,
        actor_user=user,
        via=AccessSource.MAILBOX,
    )
    return LiveStream(
        kind=StreamKind.MAILBOX,
        practice_id=practice_id,
        groups=[practice_group(practice_id)],
        user=user,
        token_id=token_id,
    )


def open_conversation_stream(
    *, user: User | None, token_id: int | None, conversation_id: int, via: AccessSource
) -> LiveStream:
    conversation = stream_conversation(user, conversation_id)
    require_conversation_stream(user, conversation, via)
    audit.record_conversation_read(operation="conversationEvents", user=user, conversation=conversation, via=via)
    return LiveStream(
        kind=StreamKind.CONVERSATION,
        practice_id=conversation.practice_id,
        groups=[conversation_group(conversation_id)],
        user=user,
        token_id=token_id,
        conversation_id=conversation_id,
        via=via,
    )


def open_portal_stream(*, patient: Patient, token_id: int | None) -> LiveStream:
    require_portal_stream(patient)
    audit.record(
        operation="portalEvents",
        action=AuditAction.READ,
        practice=patient.practice_id,
        actor_patient=patient,
        patient=patient,
        via=AccessSource.PORTAL,
    )
    return LiveStream(
        kind=StreamKind.PORTAL,
        practice_id=patient.practice_id,
        groups=[patient_group(patient.pk)],
        patient=patient,
        token_id=token_id,
    )


# ---- reading the log -------------------------------------------------------------------------------


def require_token(token_id: int | None) -> None:
    if token_id is not None and not token_is_valid(token_id):
        raise DomainError(ErrorCode.UNAUTHENTICATED, INVALID_TOKEN_MESSAGE)


def require_session(session_key: str | None) -> None:
    if session_key is not None and not valid_session_keys([session_key]):
        raise not_signed_in()


def _recheck_access(stream: LiveStream) -> set[int]:
    """The current access decision; returns the subscribed active mailboxes for the mailbox stream."""
    require_token(stream.token_id)
    require_session(stream.session_key)
    # Staff streams: require_workbench_member reads the account's current is_active with the membership.
    if stream.kind == StreamKind.MAILBOX:
        require_mailbox_stream(stream.user, stream.practice_id)
        return subscribed_active_mailbox_ids(stream.user, stream.practice_id)
    if stream.kind == StreamKind.CONVERSATION:
        require_conversation_stream(stream.user, stream_conversation(stream.user, stream.conversation_id), stream.via)
        return set()
    require_portal_stream(stream.patient)
    return set()


def _visible(stream: LiveStream, event: Event, subscribed: set[int]) -> bool:
    if stream.kind == StreamKind.MAILBOX:
        return mailbox_stream_visible(event, stream.user, subscribed)
    if stream.kind == StreamKind.CONVERSATION:
        return conversation_stream_visible(event, stream.user)
    return True


def read_batch(stream: LiveStream, after_id: int, limit: int = BATCH_SIZE) -> Batch:
    """Access re-checked, then the next logged events after `after_id` that this viewer may see."""
    subscribed = _recheck_access(stream)
    rows = list(Event.objects.filter(stream.log_filter(), id__gt=after_id).order_by("id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    if not rows:
        return Batch(last_id=after_id)
    visible = [event for event in rows if _visible(stream, event, subscribed)]
    return Batch(items=visible, last_id=rows[-1].pk, more=more, access=frozenset(subscribed))


# ---- the shared reader: one log read, one access decision, one object load per event and process ---


def _event_id(event: Event) -> int:
    return event.pk


@dataclass(frozen=True)
class _PracticeLog:
    """A snapshot of the practice's recent log: every event with `floor < id <= head` is in `rows`, in id order.
    Replaced whole, never changed, so the event loop can read it while the live thread makes the next one."""

    floor: int
    head: int
    rows: tuple[Event, ...] = ()
    read_at: float = 0.0


class AnnouncedRows:
    """Events as their publishes carried them (`core.events.publish`), each under the practice's event before it
    in the log. A process whose log read has reached an event's predecessor appends the event from here instead
    of reading the log: one query less on every live event's path. Anything missing (a lost publish, a row too
    large to carry, a log not serialized) breaks the chain, and the log is read as before.

    Filled on the event loop (`graph.asgi.LiveHub`), read on the live thread: only single dict operations on
    either side, so no lock is needed.
    """

    KEEP = 256  # per practice: more than a burst of publishes between two reads of one process

    def __init__(self) -> None:
        self._by_practice: dict[int, dict[int, Event]] = {}

    def offer(self, message: dict) -> None:
        practice_id, previous_id, row = message.get("practice_id"), message.get("previous_id"), message.get("row")
        if not (isinstance(practice_id, int) and isinstance(previous_id, int) and isinstance(row, dict)):
            return
        chain = self._by_practice.setdefault(practice_id, {})
        if previous_id in chain:  # the same publish through another group
            return
        try:
            event = Event(
                id=row["id"],
                practice_id=practice_id,
                kind=row["kind"],
                mailbox_id=row["mailbox_id"],
                conversation_id=row["conversation_id"],
                patient_id=row["patient_id"],
                message_id=row["message_id"],
                user_ids=list(row["user_ids"]),
                data=dict(row["data"]),
                created_at=datetime.fromisoformat(row["created_at"]),
            )
        except (KeyError, TypeError, ValueError):
            return
        if not isinstance(event.pk, int) or event.pk <= previous_id:
            return
        event._state.adding, event._state.db = False, DEFAULT_DB_ALIAS  # as read from the database
        chain[previous_id] = event
        while len(chain) > self.KEEP:
            del chain[next(iter(chain))]

    def following(self, practice_id: int, head: int, wanted_id: int) -> list[Event] | None:
        """Every event after `head` up to `wanted_id`, in log order, if the publishes carried them all."""
        chain = self._by_practice.get(practice_id)
        rows: list[Event] = []
        while chain is not None and head < wanted_id:
            event = chain.get(head)
            if event is None:
                return None
            rows.append(event)
            head = event.pk
        return rows if rows and head == wanted_id else None


@dataclass(frozen=True)
class _Memo:
    head: int
    at: float
    value: object
    stream: LiveStream | None = None


class SharedLog:
    """What every subscription of one server process shares, so fan-out costs queries per event, not per
    subscriber: the practice log read once per publish, access decided once per distinct viewer.

    Written only from the live thread (`core.live_db`), one call at a time: plain dicts suffice. The event loop
    may read it (`cached_batch`): log snapshots and memos are immutable and replaced in one assignment. A stream
    that has fallen behind the cached window (resume from an old cursor) reads the log itself, as before.

    Access changes are events too (`permissions.live.ACCESS_CHANGES`: settings, permissions, memberships,
    subscriptions, mailbox status, token revocation, sign-out): reading one drops the decisions it concerns,
    so the next event is decided afresh, and an event costs no access query otherwise. Decisions are also
    decided again after `LIVE_ACCESS_RECHECK_SECONDS`, the safety net for changes made outside the actions (raw SQL),
    in the background while the old decision stands (at most as long again);
    tokens that simply expire are the sockets' own re-check (`graph.asgi.TokenWatch`).
    """

    KEEP_ROWS = 1000
    # A wake-up without an event id (the periodic re-check) accepts a log read this recent.
    FRESH_SECONDS = 0.5

    def __init__(self) -> None:
        self.reuse_seconds: float | None = None  # None: LIVE_ACCESS_RECHECK_SECONDS
        self.clear()

    def clear(self) -> None:
        self.announced = AnnouncedRows()
        self.logs: dict[int, _PracticeLog] = {}
        self.access: dict[tuple, _Memo] = {}
        self.due: set[tuple] = set()  # keys of `access` to decide again (`revalidate_due`)

    def read_batch(self, stream: LiveStream, after_id: int, wanted_id: int | None, limit: int = BATCH_SIZE) -> Batch:
        log = self._log(stream.practice_id, after_id, wanted_id)
        if after_id < log.floor:
            return read_batch(stream, after_id, limit)
        subscribed = self._memo(self.access, stream.access_key(), log.head, lambda: _recheck_access(stream), stream)
        rows, last_id, more = self._rows(stream, log, after_id, limit)
        visible = [event for event in rows if _visible(stream, event, subscribed)]
        return Batch(items=visible, last_id=last_id, more=more, access=frozenset(subscribed))

    def cached_batch(
        self, stream: LiveStream, after_id: int, wanted_id: int | None, limit: int = BATCH_SIZE
    ) -> Batch | None:
        """What `read_batch` would answer, if the log read and the access decision it needs are here already;
        None if anything would need the database. Only reads: the event loop calls it,
        so the many subscribers one publish wakes do not each queue for the live thread."""
        log = self.logs.get(stream.practice_id)
        now = time.monotonic()
        if log is None or after_id < log.floor or log.head < after_id:
            return None
        if log.head < wanted_id if wanted_id is not None else now - log.read_at > self.FRESH_SECONDS:
            return None
        access = self._fresh(self.access, stream.access_key(), log.head, now)
        if access is None:
            return None
        rows, last_id, more = self._rows(stream, log, after_id, limit)
        visible = [event for event in rows if _visible(stream, event, access.value)]
        return Batch(items=visible, last_id=last_id, more=more, access=frozenset(access.value))

    @staticmethod
    def _rows(stream: LiveStream, log: _PracticeLog, after_id: int, limit: int) -> tuple[list[Event], int, bool]:
        start = bisect.bisect_right(log.rows, after_id, key=_event_id)
        rows = [e for e in log.rows[start:] if stream.in_log(e)]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].pk if more else max(after_id, log.head)), more

    def _log(self, practice_id: int, after_id: int, wanted_id: int | None) -> _PracticeLog:
        log = self.logs.get(practice_id)
        if log is None:
            log = self.logs[practice_id] = _PracticeLog(floor=after_id, head=after_id)
        now = time.monotonic()
        stale = log.head < after_id or (
            log.head < wanted_id if wanted_id is not None else now - log.read_at > self.FRESH_SECONDS
        )
        if not stale:
            return log
        new = self.announced.following(practice_id, log.head, wanted_id) if wanted_id is not None else None
        if new is None:
            new = list(
                Event.objects.filter(practice_id=practice_id, id__gt=log.head).order_by("id")[: self.KEEP_ROWS + 1]
            )
        if len(new) > self.KEEP_ROWS:
            # Far behind (no stream here followed this practice for a while): start again at the newest event;
            # streams still behind it read the log themselves until they catch up.
            newest = new[-1].pk
            newest = Event.objects.filter(practice_id=practice_id).aggregate(newest=Max("id"))["newest"] or newest
            log = _PracticeLog(floor=newest, head=newest, read_at=now)
            # The skipped rows were not looked at for access changes: every decision of the practice goes.
            for key in [
                k for k, m in self.access.items() if m.stream is not None and m.stream.practice_id == practice_id
            ]:
                del self.access[key]
        elif new:
            rows = (*log.rows, *new)
            floor = log.floor
            if len(rows) > self.KEEP_ROWS:
                floor = rows[len(rows) - self.KEEP_ROWS - 1].pk
                rows = rows[len(rows) - self.KEEP_ROWS :]
            log = _PracticeLog(floor=floor, head=new[-1].pk, rows=rows, read_at=now)
            self._forget_old()
            self._forget_changed(practice_id, [e for e in new if e.kind in ACCESS_CHANGES])
        else:
            log = _PracticeLog(floor=log.floor, head=log.head, rows=log.rows, read_at=now)
        self.logs[practice_id] = log
        return log

    def reuse_for(self) -> float:
        """How long an access decision stands without an access change (read per use: settings may change).
        Tokens, sessions and disabled accounts are the socket's own re-check (`graph.asgi.TokenWatch`)."""
        return self.reuse_seconds if self.reuse_seconds is not None else _recheck_seconds()

    def decide(self, stream: LiveStream, head: int) -> None:
        """Decides a new stream's access now, at subscribe time, so its first event (a publish that wakes many new
        subscribers at once) finds the decision in memory instead of queueing one per viewer on the live thread.
        An access change logged after `head` still drops it (`_forget_changed`)."""
        self.access[stream.access_key()] = _Memo(
            head=head, at=time.monotonic(), value=_recheck_access(stream), stream=stream
        )

    def _fresh(self, memos: dict[tuple, _Memo], key: tuple, head: int, now: float) -> _Memo | None:
        """A decision that stands. Past `reuse_for` it still stands, for as long again, while it is decided anew
        in the background (`revalidate_due`): 250 viewers whose decisions expired together made one event wait
        for 250 access checks on the live thread."""
        memo = memos.get(key)
        if memo is None or memo.head > head:
            return None
        age, reuse = now - memo.at, self.reuse_for()
        if age <= reuse:
            return memo
        if age <= 2 * reuse and memo.stream is not None:
            self.due.add(key)
            return memo
        return None

    def revalidate_due(self, limit: int = 25) -> int:
        """Decides again (on the live thread) up to `limit` decisions past `reuse_for` that streams still use;
        returns how many wait. A refusal drops the decision: the stream's next read decides, and ends it."""
        for _ in range(min(limit, len(self.due))):
            key = self.due.pop()
            memo = self.access.get(key)
            now = time.monotonic()
            if memo is None or memo.stream is None or now - memo.at <= self.reuse_for():
                continue
            log = self.logs.get(memo.stream.practice_id)
            try:
                value = _recheck_access(memo.stream)
            except DomainError:
                self.access.pop(key, None)
                continue
            head = max(memo.head, log.head if log is not None else 0)
            self.access[key] = _Memo(head=head, at=now, value=value, stream=memo.stream)
        return len(self.due)

    def _forget_changed(self, practice_id: int, changes: list[Event]) -> None:
        """Drops the decisions an access change of the practice concerns (the next event decides afresh)."""
        if not changes:
            return
        for key, memo in list(self.access.items()):
            stream = memo.stream
            if stream.practice_id == practice_id and any(stream.concerned_by(change) for change in changes):
                del self.access[key]

    def _memo(self, memos: dict[tuple, _Memo], key: tuple, head: int, compute, stream: LiveStream | None = None):
        now = time.monotonic()
        memo = self._fresh(memos, key, head, now)
        if memo is not None:
            return memo.value
        value = compute()  # a refusal (DomainError) is raised to this stream and not kept
        memos[key] = _Memo(head=head, at=now, value=value, stream=stream)
        return value

    def _forget_old(self) -> None:
        now = time.monotonic()
        for key in [k for k, m in self.access.items() if now - m.at > 2 * self.reuse_for()]:
            self.access.pop(key, None)


SHARED = SharedLog()


def start_stream(stream: LiveStream, after: str | None) -> tuple[int, int]:
    """`start_position`, with the stream's access decided for the shared reader at the same moment."""
    start, newest = start_position(stream, after)
    SHARED.decide(stream, newest)
    return start, newest


def read_shared(stream: LiveStream, after_id: int, wanted_id: int | None) -> Batch:
    return SHARED.read_batch(stream, after_id, wanted_id)


def _recheck_seconds() -> float:
    return float(settings.MAILBOX.get("LIVE_ACCESS_RECHECK_SECONDS", 30))


# ---- retention -------------------------------------------------------------------------------------


def prune_events(*, older_than_days: int | None = None) -> int:
    """Deletes logged events past retention; a cursor pointing at one of them is then refused."""
    days = settings.MAILBOX["EVENT_RETENTION_DAYS"] if older_than_days is None else older_than_days
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = Event.objects.filter(created_at__lt=cutoff).delete()
    return deleted
