from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Patient messages mailbox"

    def ready(self) -> None:
        # Connects the receivers: access changes as events, and the sign-in receiver that starts a session's
        # lifetime and idle clocks.
        from core import sessions, signals  # noqa: F401
