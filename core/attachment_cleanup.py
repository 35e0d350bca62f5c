"""Removing what a crash or a rollback left behind: stored files whose row never committed, and rows that
never got a message. Only names this service generates are touched, and only once they are old enough that
no send can still be committing them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.files.storage import Storage
from django.db import transaction
from django.utils import timezone

from core.attachments import STORAGE_NAME_PATTERN, attachment_storage
from core.models import Attachment

log = logging.getLogger(__name__)

_GENERATED_NAME = re.compile(STORAGE_NAME_PATTERN)
_BATCH = 500


@dataclass
class CleanupReport:
    orphan_files: list[str] = field(default_factory=list)
    unattached_rows: list[int] = field(default_factory=list)


def _stored_names(storage: Storage, directory: str = "") -> Iterator[str]:
    try:
        directories, files = storage.listdir(directory)
    except FileNotFoundError:
        return  # nothing stored yet
    prefix = f"{directory}/" if directory else ""
    for name in sorted(files):
        yield prefix + name
    for sub in sorted(directories):
        yield from _stored_names(storage, prefix + sub)


def _older_than(storage: Storage, name: str, cutoff: datetime) -> bool:
    try:
        return storage.get_modified_time(name) <= cutoff
    except (NotImplementedError, OSError):
        return False  # unknown age: keep it, it may belong to a send in progress


def _orphan_files(storage: Storage, cutoff: datetime) -> Iterator[str]:
    batch: list[str] = []
    for name in _stored_names(storage):
        if _GENERATED_NAME.match(name):
            batch.append(name)
        if len(batch) >= _BATCH:
            yield from _without_rows(storage, batch, cutoff)
            batch = []
    yield from _without_rows(storage, batch, cutoff)


def _without_rows(storage: Storage, names: list[str], cutoff: datetime) -> Iterator[str]:
    known = set(Attachment.objects.filter(storage_name__in=names).values_list("storage_name", flat=True))
    for name in names:
        if name not in known and _older_than(storage, name, cutoff):
            yield name


def cleanup_attachments(*, older_than: timedelta, dry_run: bool = False) -> CleanupReport:
    storage = attachment_storage()
    cutoff = timezone.now() - older_than
    report = CleanupReport()
    unattached = Attachment.objects.filter(message__isnull=True, created_at__lte=cutoff)
    for attachment in unattached.only("pk", "storage_name").iterator():
        report.unattached_rows.append(attachment.pk)
        if not dry_run:
            with transaction.atomic():
                # Re-checked under the delete: a row attached meanwhile stays.
                deleted, _ = Attachment.objects.filter(pk=attachment.pk, message__isnull=True).delete()
            if deleted:
                _delete_file(storage, attachment.storage_name)
    for name in _orphan_files(storage, cutoff):
        report.orphan_files.append(name)
        if not dry_run:
            _delete_file(storage, name)
    return report


def _delete_file(storage: Storage, name: str) -> None:
    try:
        storage.delete(name)
    except Exception:
        log.exception("could not remove orphaned attachment file %s", name)
