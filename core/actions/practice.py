"""Practice administration: permissions and advanced settings (owners and administrators)."""

from __future__ import annotations

from django.db import transaction

from core import audit
from core.errors import DomainError, ErrorCode, not_found
from core.events import emit_access_changed
from core.models import (
    PORTAL_SETTING,
    WORKBENCH_SETTING,
    AccessSource,
    AuditAction,
    Membership,
    PermissionGrant,
    PracticePermission,
    PracticeSetting,
    User,
)
from core.text import has_unstorable_characters, is_format_character, unstorable_text_message
from permissions import require_practice_admin

SETTING_KEY_MAX = 200
SETTING_VALUE_MAX = 1000
# The switches read exactly "T" as on: any other value ("yes", "TRUE") would silently mean off.
BOOLEAN_SETTINGS = frozenset({WORKBENCH_SETTING, PORTAL_SETTING})
BOOLEAN_VALUES = ("T", "F")


def setting_problem(key: str, value: str) -> tuple[str, str] | None:
    """What is wrong with a trimmed setting, as (field, message), or None. Shared with the directory import."""
    if has_unstorable_characters(key):
        return "key", unstorable_text_message("key")
    if not key or len(key) > SETTING_KEY_MAX or any(ch.isspace() or is_format_character(ch) for ch in key):
        return "key", f"Setting keys are 1 to {SETTING_KEY_MAX} characters without spaces or invisible characters."
    if has_unstorable_characters(value):
        return "value", unstorable_text_message("value")
    if len(value) > SETTING_VALUE_MAX:
        return "value", f"Setting values are at most {SETTING_VALUE_MAX} characters."
    if key in BOOLEAN_SETTINGS and value not in BOOLEAN_VALUES:
        return "value", f"{key} is a switch: set it to T (on) or F (off), not {value[:20]!r}."
    return None


def _target_membership(practice_id: int, user_id: int) -> Membership:
    membership = Membership.objects.select_for_update().filter(practice_id=practice_id, user_id=user_id).first()
    if membership is None:
        raise not_found("user")
    return membership


def _clean_permission(permission: str) -> PracticePermission:
    try:
        return PracticePermission(permission)
    except ValueError:
        allowed = ", ".join(PracticePermission.values)
        raise DomainError(ErrorCode.VALIDATION_ERROR, f"Unknown permission '{permission}'; use one of {allowed}.")


def grant_permission(*, acting_user: User, practice_id: int, user_id: int, permission: str) -> Membership:
    require_practice_admin(acting_user, practice_id)
    permission = _clean_permission(permission)
    with transaction.atomic():
        membership = _target_membership(practice_id, user_id)
        _, created = PermissionGrant.objects.get_or_create(membership=membership, permission=permission)
        if created:
            emit_access_changed(practice_id=practice_id, user_ids=[user_id], reason="permission")
            audit.record(
                operation="grantPermission",
                action=AuditAction.UPDATE,
                practice=practice_id,
                actor_user=acting_user,
                target=membership,
                via=AccessSource.ADMIN,
                detail={"user_id": user_id, "permission": permission},
            )
    return membership


def revoke_permission(*, acting_user: User, practice_id: int, user_id: int, permission: str) -> Membership:
    require_practice_admin(acting_user, practice_id)
    permission = _clean_permission(permission)
    with transaction.atomic():
        membership = _target_membership(practice_id, user_id)
        deleted, _ = PermissionGrant.objects.filter(membership=membership, permission=permission).delete()
        if deleted:
            emit_access_changed(practice_id=practice_id, user_ids=[user_id], reason="permission")
            audit.record(
                operation="revokePermission",
                action=AuditAction.UPDATE,
                practice=practice_id,
                actor_user=acting_user,
                target=membership,
                via=AccessSource.ADMIN,
                detail={"user_id": user_id, "permission": permission},
            )
    return membership


def set_practice_setting(*, acting_user: User, practice_id: int, key: str, value: str) -> PracticeSetting:
    require_practice_admin(acting_user, practice_id)
    key = (key or "").strip()
    value = (value or "").strip()
    problem = setting_problem(key, value)
    if problem is not None:
        field, message = problem
        raise DomainError(ErrorCode.VALIDATION_ERROR, message, field=field)
    with transaction.atomic():
        setting, created = PracticeSetting.objects.select_for_update().get_or_create(
            practice_id=practice_id, key=key, defaults={"value": value}
        )
        old_value = None if created else setting.value
        if old_value == value:
            return setting
        if not created:
            setting.value = value
            setting.save(update_fields=["value"])
        emit_access_changed(practice_id=practice_id, reason="setting", key=key)
        audit.record(
            operation="setPracticeSetting",
            action=AuditAction.UPDATE,
            practice=practice_id,
            actor_user=acting_user,
            target=setting,
            via=AccessSource.ADMIN,
            detail={"key": key, "old": old_value, "new": value},
        )
    return setting
