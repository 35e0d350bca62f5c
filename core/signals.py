"""Access changes made outside the actions (sign-out, the admin switching an account off) become events too,
so open live streams of that session or account end at their next event (`core.live`)."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from core.events import emit_access_changed, emit_account_access_changed
from core.models import Membership, User


@receiver(user_logged_out)
def _session_ended(sender, request, user, **kwargs) -> None:
    if user is None or request is None:
        return
    with transaction.atomic():
        # Ended before the event is read: a stream deciding again must find the session gone.
        request.session.delete()
        emit_account_access_changed(reason="session", user=user)


@receiver(pre_save, sender=User)
def _remember_active(sender, instance: User, update_fields=None, **kwargs) -> None:
    if instance.pk is None or (update_fields is not None and "is_active" not in update_fields):
        return
    instance._was_active = User.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()


@receiver(post_save, sender=User)
def _account_switched(sender, instance: User, created: bool, **kwargs) -> None:
    was_active = getattr(instance, "_was_active", None)
    if not created and was_active is not None and was_active != instance.is_active:
        emit_account_access_changed(reason="account", user=instance)


@receiver(post_save, sender=Membership)
@receiver(post_delete, sender=Membership)
def _membership_changed(sender, instance: Membership, created: bool = False, **kwargs) -> None:
    """One membership changed or removed through the ORM (the admin shell, a data fix); bulk imports emit their
    own. A new membership needs none: its user had no stream in the practice to decide again."""
    if not created:
        emit_access_changed(practice_id=instance.practice_id, user_ids=[instance.user_id], reason="membership")
