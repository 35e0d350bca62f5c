"""Practice administration: permissions and advanced settings (owners and administrators)."""

from __future__ import annotations

from django.db import transaction

from core import audit
from core.errors import DomainError, ErrorCode, not_found
from core.events import emit_access_changed
from core.models import (
    AccessSource,
    AuditAction,
    Membership,
    PermissionGrant,
    PracticePermission,
    PracticeSetting,
    User,
)
from permissions import require_practice_admin

SETTING_KEY_MAX = 200
SETTING_VALUE_MAX = 1000


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
    if not key or len(key) > SETTING_KEY_MAX or any(ch.isspace() for ch in key):
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"Setting keys are 1 to {SETTING_KEY_MAX} characters without spaces.",
            field="key",
        )
    if len(value) > SETTING_VALUE_MAX:
        raise DomainError(ErrorCode.VALIDATION_ERROR, f"Setting values are at most {SETTING_VALUE_MAX} characters.")
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
