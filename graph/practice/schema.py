"""Root fields of practices and people: the viewer, their practices, members, settings, Meaningful Use."""

from __future__ import annotations

import strawberry
from strawberry import relay

from core import actions, admin_reads, models
from graph.context import Info
from graph.enums import PracticePermission
from graph.ids import decode_id
from graph.practice.types import (
    ClinicianRef,
    MeaningfulUse,
    MembershipType,
    PracticeSettingType,
    PracticeType,
    UserType,
)
from permissions import practices_visible_to, require_member


@strawberry.field(description="The signed-in staff user.")
def me(info: Info) -> UserType:
    return info.context.require_user()


@strawberry.field(description="Practices the viewer belongs to (the practice switcher).")
def practices(info: Info) -> list[PracticeType]:
    return list(practices_visible_to(info.context.require_user()).order_by("name", "pk"))


@strawberry.field(description="Members of a practice with their role, clinician flag and permissions.")
def practice_users(info: Info, practice_id: strawberry.ID) -> list[MembershipType]:
    user = info.context.require_user()
    practice_id = decode_id(practice_id, "Practice")
    require_member(user, practice_id)
    return list(
        models.Membership.objects.filter(practice_id=practice_id)
        .select_related("user", "practice")
        .prefetch_related("grants")
        .order_by("user__full_name", "user__username")
    )


@strawberry.field(description="The practice's advanced settings (owners and administrators).")
def practice_settings(info: Info, practice_id: strawberry.ID) -> list[PracticeSettingType]:
    rows = admin_reads.practice_settings(
        acting_user=info.context.require_user(), practice_id=decode_id(practice_id, "Practice")
    )
    return [PracticeSettingType(key=s.key, value=s.value) for s in rows]


@strawberry.field(description="Meaningful Use: a clinician subscribed to an active mailbox.")
def meaningful_use(info: Info, practice_id: strawberry.ID) -> MeaningfulUse:
    clinicians = admin_reads.meaningful_use(
        acting_user=info.context.require_user(), practice_id=decode_id(practice_id, "Practice")
    )
    return MeaningfulUse(
        counts_as_patient_messaging=bool(clinicians),
        clinicians=[ClinicianRef(id=relay.GlobalID("User", str(u.pk)), full_name=u.display_name()) for u in clinicians],
    )


@strawberry.mutation
def grant_permission(
    info: Info, practice_id: strawberry.ID, user_id: strawberry.ID, permission: PracticePermission
) -> MembershipType:
    return actions.grant_permission(
        acting_user=info.context.require_user(),
        practice_id=decode_id(practice_id, "Practice"),
        user_id=decode_id(user_id, "User"),
        permission=permission.value,
    )


@strawberry.mutation
def revoke_permission(
    info: Info, practice_id: strawberry.ID, user_id: strawberry.ID, permission: PracticePermission
) -> MembershipType:
    return actions.revoke_permission(
        acting_user=info.context.require_user(),
        practice_id=decode_id(practice_id, "Practice"),
        user_id=decode_id(user_id, "User"),
        permission=permission.value,
    )


@strawberry.mutation(description="Advanced settings: free-form key → value (`T`/`F` for switches).")
def set_practice_setting(info: Info, practice_id: strawberry.ID, key: str, value: str) -> PracticeSettingType:
    setting = actions.set_practice_setting(
        acting_user=info.context.require_user(),
        practice_id=decode_id(practice_id, "Practice"),
        key=key,
        value=value,
    )
    return PracticeSettingType(key=setting.key, value=setting.value)
