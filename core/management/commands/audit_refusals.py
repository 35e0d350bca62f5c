"""Reports the refusals filed under no practice, which no administrator can read through the API."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from core.refusals import unowned_refusals


class Command(BaseCommand):
    help = (
        "List refused operations and failed tokens that belong to no practice (unknown tokens, callers of no "
        "practice), newest first, with a count per outcome and per IP address."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=7, help="How far back to look (default 7 days).")
        parser.add_argument("--limit", type=int, default=200, help="Rows listed at most (default 200).")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="One JSON object per line instead of text."
        )

    def handle(self, *args, days: int, limit: int, as_json: bool, **options) -> None:
        since = timezone.now() - timedelta(days=days)
        events = unowned_refusals(since=since).select_related("actor_user")
        counted = list(events.values_list("outcome", "ip"))
        rows = [_describe(event) for event in events[:limit]]
        if as_json:
            for row in rows:
                self.stdout.write(_dumps(row))
            return
        outcomes = Counter(outcome for outcome, _ in counted)
        addresses = Counter(ip or "-" for _, ip in counted)
        self.stdout.write(f"{len(counted)} refusals with no practice since {since:%Y-%m-%d %H:%M} UTC")
        if counted:
            self.stdout.write("by outcome: " + ", ".join(f"{k} {n}" for k, n in outcomes.most_common()))
            self.stdout.write("by IP: " + ", ".join(f"{k} {n}" for k, n in addresses.most_common(10)))
        for row in rows:
            self.stdout.write(
                f"{row['at']}  {row['outcome']:<16} {row['operation']:<24} {row['actor']:<16} {row['ip'] or '-':<15}"
                f" {row['requestId'] or '-'}  {_dumps(row['detail'])}"
            )
        if len(counted) > len(rows):
            self.stdout.write(f"… {len(counted) - len(rows)} more (use --limit)")


def _describe(event) -> dict:
    if event.actor_user_id:
        actor = f"user:{event.actor_user.username}"
    elif event.actor_patient_id:
        actor = f"patient:{event.actor_patient_id}"
    else:
        actor = "-"
    return {
        "at": event.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "outcome": event.outcome,
        "operation": event.operation,
        "actor": actor,
        "ip": event.ip,
        "requestId": event.request_id,
        "detail": event.detail,
    }


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
