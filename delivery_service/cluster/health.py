"""A worker container's health check: `python -m delivery_service.cluster.health`.

Exits 0 when this host's Celery worker answers a ping through the broker, 1 otherwise. It imports no
crews (unlike `celery -A delivery_service.cluster.worker inspect ping`), so a check costs little CPU.
"""

from __future__ import annotations

import socket
import sys

from delivery_service.cluster.celery_app import create_celery_app
from delivery_service.settings import get_settings

PING_TIMEOUT_SECONDS = 3.0


def worker_answers(hostname: str) -> bool:
    app = create_celery_app(get_settings())
    replies = app.control.ping(destination=[f"celery@{hostname}"], timeout=PING_TIMEOUT_SECONDS)
    return any(f"celery@{hostname}" in reply for reply in replies)


if __name__ == "__main__":
    sys.exit(0 if worker_answers(socket.gethostname()) else 1)
