"""The demo: two practices from `directory.json`, and a few mailboxes and threads created through the actions."""

from __future__ import annotations

from pathlib import Path

DEMO_DIRECTORY = Path(__file__).with_name("directory.json")
# Every demo staff user signs in with this password (see directory.json).
DEMO_PASSWORD = "demo-pass-123"
# Whom `demo_tokens` issues tokens for: (username, what to try with them).
DEMO_TOKEN_USERS = [
    ("olivia", "owner of North Clinic: permissions, settings, audit trail"),
    ("mia", "mailbox admin of North Clinic: create mailboxes, manage subscribers"),
    ("frank", "front desk staff of North Clinic: works Billing and Scheduling"),
]
DEMO_PRACTICE_KEYS = ("north", "south")
DEMO_TOKEN_PATIENT = ("north", "N-10001")  # María García, for the portal API
