"""Practices and people: practices, users, memberships, settings, the Meaningful Use report."""

from __future__ import annotations

from collections import defaultdict

import strawberry
import strawberry_django
from strawberry import relay

from core import models
from graph.batching import batch_of
from graph.context import Info
from graph.enums import PracticePermission, Role
from permissions import memberships_visible_to


@strawberry_django.type(models.Practice, name="Practice")
class PracticeType(relay.Node):
    pk: relay.NodeID[int]
    name: str
    key: str


@strawberry_django.type(models.User, name="User")
class UserType(relay.Node):
    pk: relay.NodeID[int]
    username: str

    @strawberry.field
    def full_name(self: models.User) -> str:
        return self.display_name()

    @strawberry.field(description="The user's memberships in practices the viewer shares with them.")
    def memberships(self: models.User, info: Info) -> list[MembershipType]:
        viewer = info.context.require_user()
        batch = batch_of(info.context, self)

        def load() -> dict[int, list[models.Membership]]:
            rows = (
                memberships_visible_to(viewer, {u.pk for u in batch.rows})
                .select_related("practice")
                .prefetch_related("grants")
                .order_by("practice__name", "pk")
            )
            by_user: dict[int, list[models.Membership]] = defaultdict(list)
            for membership in rows:
                by_user[membership.user_id].append(membership)
            return by_user

        return info.context.memo(("memberships", batch), load).get(self.pk, [])


@strawberry_django.type(models.Membership, name="Membership")
class MembershipType:
    practice: PracticeType
    user: UserType
    role: Role
    is_clinician: bool

    @strawberry.field
    def permissions(self: models.Membership) -> list[PracticePermission]:
        return sorted((grant.permission for grant in self.grants.all()), key=str)


@strawberry.type(name="PracticeSetting")
class PracticeSettingType:
    key: str
    value: str


@strawberry.type
class ClinicianRef:
    id: relay.GlobalID
    full_name: str


@strawberry.type
class MeaningfulUse:
    counts_as_patient_messaging: bool
    clinicians: list[ClinicianRef]
