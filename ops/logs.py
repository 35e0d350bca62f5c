"""Structured logs with structlog: JSON lines in production, readable console lines in development.

Every record, ours and the libraries' (Django, daphne, strawberry), goes through one formatter, and carries the
request id bound for the request or WebSocket operation it happened in (`structlog.contextvars`), so a
traceback is found under the id the client was given (`X-Request-ID`, `extensions.requestId`).
"""

from __future__ import annotations

import structlog

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def logging_config(*, json: bool, level: str) -> dict:
    """Django's LOGGING: one console handler whose formatter renders every record as structlog does."""
    renderer = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if json
        else [structlog.dev.ConsoleRenderer(colors=False)]
    )
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
                "foreign_pre_chain": [*_SHARED, structlog.stdlib.ExtraAdder()],
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # daphne's access log repeats what our request line says, without the request id.
            "django.channels.server": {"level": "WARNING"},
            # Django's own "Not Found"/"Bad Request" warnings: our request line has them (status, outcome).
            "django.request": {"level": "ERROR"},
        },
    }


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
