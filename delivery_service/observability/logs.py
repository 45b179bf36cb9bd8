"""Process logging: plain text lines, or one JSON object per record (`LOG_FORMAT=json`) for log shippers.

Every record carries the id of the task it concerns, if any: code working for a task sets `current_task_id`
(unless a record passes `extra={"task_id": ...}`). Uvicorn's and CrewAI's loggers share the root handler.
"""

from __future__ import annotations

import logging
import logging.config
from contextvars import ContextVar
from typing import Any, Literal

current_task_id: ContextVar[str | None] = ContextVar("current_task_id", default=None)

LogFormat = Literal["text", "json"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s%(task_label)s %(name)s: %(message)s"
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(task_id)s"


class TaskIdFilter(logging.Filter):
    """Adds `task_id` (None outside any task) and, for text lines, a ` [task <id>]` label."""

    def filter(self, record: logging.LogRecord) -> bool:
        task_id = getattr(record, "task_id", None) or current_task_id.get()
        record.task_id = task_id
        record.task_label = f" [task {task_id}]" if task_id else ""
        return True


def configure_logging(level: str, log_format: LogFormat) -> None:
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": _JSON_FIELDS,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "timestamp": False,
        }
        if log_format == "json"
        else {"format": _TEXT_FORMAT}
    )
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"task_id": {"()": TaskIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default", "filters": ["task_id"]}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            name: {"level": level.upper(), "handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
    logging.config.dictConfig(config)
