"""Synthetic bench data, bulk-loaded with COPY: realistic practices, mailboxes, patients, conversations, messages.

Scale 1.0 is 1,000,000 patients and about 10,000,000 messages in one big practice ("bench-main": 100 mailboxes,
one conversation per patient, 1-19 messages each, plus one long thread), and three small practices with 10,
100 and 1,000 mailboxes for the mailbox-list measurements. Foreign keys, unique constraints and secondary
indexes of the big tables are dropped before the COPY and rebuilt after it (much faster than row-by-row upkeep).
A marker table records that the data is complete, so a later run reuses it.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

import psycopg
from tqdm import tqdm

from core.text import normalize_search_text

DATA_VERSION = "3"
LONG_THREAD = 10_000  # messages in the main practice's long thread (floor of measurement 6 at scale 1)
MAIN_MAILBOXES = 100
STAFF = 20
BIG_TABLES = ("core_patient", "core_conversation", "core_message")
# Filled by core_patient's triggers (migrations 0007, 0008) during the patients' COPY: indexed after, like BIG_TABLES.
SEARCH_TABLES = ("core_patient_search_token", "core_patient_search_pair")


def _words(text: str) -> list[str]:
    return text.split()


FIRST = _words(
    "María José Ana Luis Carlos Sofía Emma Olivia Noah Liam Mia Ava Lucas Mateo Chloé Zoë Renée André Jürgen "
    "Björn Ingrid Aiko Hiroshi Wei Mei Priya Arjun Fatima Omar Yusuf Amara Kwame Chidi Ngozi Sean Siobhán "
    "Niamh Ciarán Élodie Benoît Íñigo Álvaro Joaquín Lucía Ximena Valentina Camila Diego Gabriel Isabella "
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Sandra Donald "
    "Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa "
    "George Deborah Timothy Stephanie Ronald Rebecca"
)
LAST = _words(
    "García Martínez Rodríguez López González Hernández Pérez Sánchez Ramírez Torres Flores Rivera Gómez Díaz "
    "Cruz Müller Schröder Nguyen Tran Le Pham Kim Park Lee Choi Chen Wang Zhang Liu Yang Huang Patel Shah "
    "Singh Kumar Gupta Okafor Adeyemi Mensah Diallo O'Brien Ó Súilleabháin Murphy Kelly Smith Johnson Williams "
    "Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Jackson Martin Thompson White Harris Clark "
    "Lewis Robinson Walker Young Allen King Wright Scott Hill Green Adams Baker Nelson Carter Mitchell Roberts "
    "Turner Phillips Campbell Parker Evans Edwards Collins Stewart Morris Rogers Reed Cook Morgan Bell Bailey "
    "Cooper Richardson Cox Howard Ward Peterson Gray James Watson Brooks Kelly Sanders Price Bennett Wood "
    "Barnes Ross Henderson Coleman Jenkins Perry Powell Long Patterson Hughes Washington Butler Simmons Foster "
    "Bryant Alexander Russell Griffin Hayes Myers Ford Hamilton Graham Sullivan Wallace Woods Cole West Jordan "
    "Owens Reynolds Fisher Ellis Harrison Gibson McDonald Marshall Kowalski Nowak Wiśniewski Dąbrowski "
    "Lewandowski Novák Dvořák Horváth Nagy Kovács Popescu Ionescu Yılmaz Kaya Demir Şahin"
)
PRONOUNS = ("she/her", "he/him", "they/them", "")
BODIES = (
    "Hi, I have a question about my last bill.",
    "Can I move my appointment to next Tuesday morning?",
    "Your lab results are ready; everything looks normal.",
    "Please remember to fast for 12 hours before the blood draw.",
    "Thank you, that works for me.",
    "Is the clinic open on Saturday?",
    "We have sent the prescription to your pharmacy.",
    "I am still having some pain in my lower back since the visit.",
    "Could you send me a copy of my immunization record?",
    "Your insurance claim was processed; the balance is $25.00.",
    "Please call us to schedule a follow-up in two weeks.",
    "My daughter has a fever of 101F, should we come in today?",
)
MAILBOX_NAMES = ("Billing", "Scheduling", "Refills", "Front Desk", "Lab Results", "Referrals", "Nurse Line")


@dataclass
class Plan:
    scale: float
    patients: int
    long_thread: int

    @classmethod
    def for_scale(cls, scale: float) -> Plan:
        return cls(
            scale=scale, patients=max(100, int(1_000_000 * scale)), long_thread=max(2_000, int(LONG_THREAD * scale))
        )


def _copy_text(cur: psycopg.Cursor, table: str, columns: list[str], rows, total: int, desc: str, chunk: int = 20_000):
    """COPY rows (tuples of already formatted text fields) in chunks of tab-separated lines."""
    buffer: list[str] = []
    with (
        cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        tqdm(total=total, desc=desc, unit="row", unit_scale=True, mininterval=1.0) as bar,
    ):
        for line in rows:
            buffer.append(line)
            if len(buffer) >= chunk:
                copy.write("".join(buffer))
                bar.update(len(buffer))
                buffer.clear()
        if buffer:
            copy.write("".join(buffer))
            bar.update(len(buffer))


def _secondary_definitions(cur: psycopg.Cursor, table: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(unique and foreign-key constraints, plain indexes) of a table, as (name, definition) pairs."""
    cur.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY contype DESC",
        (table,),
    )
    constraints = cur.fetchall()
    cur.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        (table,),
    )
    return constraints, cur.fetchall()


def _drop_secondary(cur, table: str):
    constraints, indexes = _secondary_definitions(cur, table)
    for name, _ in constraints:
        cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cur.execute(f'DROP INDEX "{name}"')
    return constraints, indexes


def _restore_secondary(cur, table: str, constraints, indexes) -> None:
    # Unique constraints first (contype 'u' sorts before 'f' descending): foreign keys may rely on them.
    steps = [f'ALTER TABLE {table} ADD CONSTRAINT "{n}" {d}' for n, d in constraints] + [d for _, d in indexes]
    for statement in tqdm(steps, desc=f"index {table}", unit="idx"):
        cur.execute(statement)


def _ts(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S+00")


def load(dsn: str, plan: Plan, seed: int = 20251126) -> dict:
    """Loads everything into an empty, migrated database; returns the ids the measurements need."""
    rng = random.Random(seed)
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute("SET max_parallel_maintenance_workers = 2")
        # ---- the big practice, its staff and mailboxes (small: plain INSERTs) ----
        cur.execute(
            "INSERT INTO core_practice (key, name, created_at) "
            "VALUES ('bench-main', 'Bench Main Clinic', now()) RETURNING id"
        )
        main = cur.fetchone()[0]
        staff_ids = []
        for i in range(STAFF + 1):
            username = "bench" if i == 0 else f"bench-staff-{i:02d}"
            cur.execute(
                "INSERT INTO core_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
                "is_active, date_joined, full_name) "
                "VALUES ('!', false, %s, '', '', '', false, true, now(), %s) RETURNING id",
                (username, f"Staff Member {i:02d}" if i else "Bench User"),
            )
            staff_ids.append(cur.fetchone()[0])
        mailbox_ids = []
        for i in range(MAIN_MAILBOXES):
            name = MAILBOX_NAMES[i] if i < len(MAILBOX_NAMES) else f"Dr. {LAST[i % len(LAST)]} {i:03d}"
            cur.execute(
                "INSERT INTO core_mailbox (practice_id, name, is_active, created_at) "
                "VALUES (%s, %s, true, now()) RETURNING id",
                (main, name),
            )
            mailbox_ids.append(cur.fetchone()[0])
        _members_and_settings(cur, main, staff_ids, mailbox_ids)

        # ---- patients: COPY ----
        cur.execute("SELECT coalesce(max(id), 0) FROM core_patient")
        patient_base = cur.fetchone()[0] + 1
        firsts = [(f, normalize_search_text(f)) for f in FIRST]
        lasts = [(n, normalize_search_text(n)) for n in LAST]
        dob_start = dt.date(1930, 1, 1).toordinal()

        def patient_rows():
            for i in range(plan.patients):
                first, nfirst = firsts[rng.randrange(len(firsts))]
                last, nlast = lasts[rng.randrange(len(lasts))]
                dob = dt.date.fromordinal(dob_start + rng.randrange(33_000)).isoformat()
                account = f"A-{i + 1:07d}"
                yield (
                    f"{patient_base + i}\t{main}\t{account}\t{first}\t{last}\t{PRONOUNS[i % 4]}\t{dob}\t"
                    f"{nfirst} {nlast}\t{account.lower()}\n"
                )

        saved = {t: _drop_secondary(cur, t) for t in (*BIG_TABLES, *SEARCH_TABLES)}
        _copy_text(
            cur,
            "core_patient",
            [
                "id",
                "practice_id",
                "account_number",
                "first_name",
                "last_name",
                "preferred_pronoun",
                "date_of_birth",
                "search_name",
                "search_account",
            ],
            patient_rows(),
            plan.patients,
            "patients",
        )

        # ---- conversations and messages: one conversation per patient, 1-19 messages each ----
        cur.execute("SELECT coalesce(max(id), 0) FROM core_conversation")
        conv_base = cur.fetchone()[0] + 1
        cur.execute("SELECT coalesce(max(id), 0) FROM core_message")
        msg_base = cur.fetchone()[0] + 1
        lengths = [rng.randint(1, 19) for _ in range(plan.patients)]
        lengths[0] = plan.long_thread  # the long thread: patient 1 in mailbox "Billing"
        total_messages = sum(lengths)
        starts = [now - dt.timedelta(minutes=rng.randrange(2 * 365 * 24 * 60) + 40 * n) for n in lengths]
        step = dt.timedelta(minutes=1)

        def conversation_rows():
            for i, n in enumerate(lengths):
                last = _ts(starts[i] + step * n)
                status = "ARCHIVED" if i % 5 == 4 else "ACTIVE"
                yield (
                    f"{conv_base + i}\t{main}\t{mailbox_ids[i % MAIN_MAILBOXES]}\t{patient_base + i}\t{status}\t"
                    f"{_ts(starts[i])}\t{last}\t{last}\t{n}\t{n}\n"
                )

        _copy_text(
            cur,
            "core_conversation",
            [
                "id",
                "practice_id",
                "mailbox_id",
                "patient_id",
                "status",
                "created_at",
                "last_message_at",
                "last_activity_at",
                "last_sequence",
                "portal_last_sequence",
            ],
            conversation_rows(),
            plan.patients,
            "conversations",
        )

        def message_rows():
            mid = msg_base
            nbodies = len(BODIES)
            nstaff = len(staff_ids)
            for i, n in enumerate(lengths):
                conv = conv_base + i
                patient = patient_base + i
                base = starts[i]
                for seq in range(1, n + 1):
                    sent = _ts(base + step * seq)
                    if seq % 2:
                        body = BODIES[mid % nbodies]
                        yield f"{mid}\t{conv}\t{seq}\t{seq}\tFROM_PATIENT\t{body}\t{sent}\t\\N\t{patient}\t\\N\n"
                    else:
                        yield (
                            f"{mid}\t{conv}\t{seq}\t{seq}\tTO_PATIENT\t{BODIES[mid % nbodies]}\t{sent}\t"
                            f"{staff_ids[mid % nstaff]}\t\\N\t\\N\n"
                        )
                    mid += 1

        _copy_text(
            cur,
            "core_message",
            [
                "id",
                "conversation_id",
                "sequence",
                "portal_sequence",
                "direction",
                "body",
                "sent_at",
                "sender_user_id",
                "sender_patient_id",
                "client_message_id",
            ],
            message_rows(),
            total_messages,
            "messages",
            chunk=50_000,
        )
        for table, (constraints, indexes) in saved.items():
            _restore_secondary(cur, table, constraints, indexes)
        for table in ("core_patient", "core_conversation", "core_message", "core_user", "core_mailbox"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        small = {n: _small_practice(cur, n, staff_ids[0]) for n in (10, 100, 1000)}
        _fill_unread_counters(cur)
        # Last, after the counters' UPDATEs: a fresh visibility map (index-only counts), as autovacuum keeps it.
        for table in (*BIG_TABLES, *SEARCH_TABLES):
            cur.execute(f"VACUUM ANALYZE {table}")
        cur.execute("ANALYZE")
        return {
            "main_practice": main,
            "bench_user": staff_ids[0],
            "long_thread": conv_base,
            "busy_mailbox": mailbox_ids[1],
            "patients": plan.patients,
            "messages": total_messages,
            "small_practices": small,
        }


def _fill_unread_counters(cur) -> None:
    """The patient-message counters the service keeps on every send, computed once for the bulk-loaded rows."""
    cur.execute(
        "UPDATE core_conversation c SET patient_message_count = s.n FROM (SELECT conversation_id, count(*) AS n "
        "FROM core_message WHERE direction = 'FROM_PATIENT' GROUP BY conversation_id) s WHERE s.conversation_id = c.id"
    )
    cur.execute(
        "UPDATE core_mailbox m SET patient_message_count = s.n FROM (SELECT mailbox_id, sum(patient_message_count) "
        "AS n FROM core_conversation WHERE status = 'ACTIVE' GROUP BY mailbox_id) s WHERE s.mailbox_id = m.id"
    )


def _members_and_settings(cur, practice: int, user_ids: list[int], mailbox_ids: list[int]) -> None:
    for i, user in enumerate(user_ids):
        cur.execute(
            "INSERT INTO core_membership (user_id, practice_id, role, is_clinician) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            (user, practice, "OWNER" if i == 0 else "STAFF", i % 3 == 1),
        )
        membership = cur.fetchone()[0]
        if i == 0:
            cur.execute(
                "INSERT INTO core_permissiongrant (membership_id, permission, granted_at) "
                "VALUES (%s, 'MAILBOX_ADMIN_PERMISSION', now())",
                (membership,),
            )
    for key in ("ui.pat_messages_mailbox.enable", "patient_portal.use_mailbox_messaging"):
        cur.execute("INSERT INTO core_practicesetting (practice_id, key, value) VALUES (%s, %s, 'T')", (practice, key))
    # The bench user is subscribed to every mailbox; each staff member to a few.
    rows = [(m, user_ids[0]) for m in mailbox_ids]
    rows += [(m, u) for j, m in enumerate(mailbox_ids) for k, u in enumerate(user_ids[1:]) if (j + k) % 7 == 0]
    cur.executemany(
        "INSERT INTO core_mailboxsubscription (mailbox_id, user_id, created_at) VALUES (%s, %s, now())", rows
    )


def _small_practice(cur, mailboxes: int, user: int) -> dict:
    """A practice with `mailboxes` mailboxes, each with 2 conversations of 3 messages (mailbox-list pages)."""
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    cur.execute(
        "INSERT INTO core_practice (key, name, created_at) VALUES (%s, %s, now()) RETURNING id",
        (f"bench-mb{mailboxes}", f"Bench {mailboxes} Mailboxes"),
    )
    practice = cur.fetchone()[0]
    mailbox_ids = []
    for i in range(mailboxes):
        cur.execute(
            "INSERT INTO core_mailbox (practice_id, name, is_active, created_at) "
            "VALUES (%s, %s, true, now()) RETURNING id",
            (practice, f"Mailbox {i:04d}"),
        )
        mailbox_ids.append(cur.fetchone()[0])
    _members_and_settings(cur, practice, [user], mailbox_ids)
    for j, mailbox in enumerate(mailbox_ids):
        for k in range(2):
            account = f"S{mailboxes}-{j:04d}-{k}"
            cur.execute(
                "INSERT INTO core_patient (practice_id, account_number, first_name, last_name, preferred_pronoun, "
                "date_of_birth, search_name, search_account) VALUES (%s, %s, 'Ana', 'Ruiz', '', '1990-01-01', "
                "'ana ruiz', %s) RETURNING id",
                (practice, account, account.lower()),
            )
            patient = cur.fetchone()[0]
            at = now - dt.timedelta(hours=j * 2 + k)
            cur.execute(
                "INSERT INTO core_conversation (practice_id, mailbox_id, patient_id, status, created_at, "
                "last_message_at, last_activity_at, last_sequence, portal_last_sequence) "
                "VALUES (%s, %s, %s, 'ACTIVE', %s, %s, %s, 3, 3) RETURNING id",
                (practice, mailbox, patient, at, at, at),
            )
            conversation = cur.fetchone()[0]
            cur.executemany(
                "INSERT INTO core_message (conversation_id, sequence, portal_sequence, direction, body, sent_at, "
                "sender_user_id, sender_patient_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        conversation,
                        s,
                        s,
                        "FROM_PATIENT" if s % 2 else "TO_PATIENT",
                        BODIES[s],
                        at,
                        None if s % 2 else user,
                        patient if s % 2 else None,
                    )
                    for s in (1, 2, 3)
                ],
            )
    return {"practice": practice, "mailboxes": mailboxes}
