"""The Celery application of the cluster mode: Redis is the broker, one crew per worker process.

Why delivery is set so:

- `task_acks_late`: a message taken by a worker that died before starting it runs elsewhere; a phase
  already started never runs twice, as a redelivered message finds it claimed (CLAIM_SCRIPT).
- `task_reject_on_worker_lost=False`: a crew that dies is not retried (its LLM calls cost money, its events
  are already out); its lease runs out and the API ends the task with `worker_died`, once.
- `visibility_timeout` above the phase's time limit, so a long phase is not redelivered while it runs.
- `worker_prefetch_multiplier=1`: a busy process holds no queued task that an idle one could run.
- Priorities: kombu's Redis transport serves 0 first, so a message carries 9 - the API's `priority`.
"""

from __future__ import annotations

from celery import Celery

from delivery_service.settings import Settings

RUN_PHASE = "run_phase"
HIGHEST_PRIORITY = 9


def create_celery_app(settings: Settings) -> Celery:
    assert settings.redis_url is not None, "the cluster mode needs REDIS_URL"
    broker = settings.redis_url.get_secret_value()
    app = Celery("multi_agent_delivery", broker=broker)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_priority=HIGHEST_PRIORITY,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": phase_time_limit(settings) + 60,
            "queue_order_strategy": "priority",
            "priority_steps": list(range(HIGHEST_PRIORITY + 1)),
        },
    )
    return app


def phase_time_limit(settings: Settings) -> float:
    """Celery's hard limit for a phase: the task's own timeout ends it first, this kills a stuck crew."""
    return settings.task_timeout_seconds + 2 * settings.crew_stop_grace_seconds + 10


def send_phase(app: Celery, settings: Settings, task_id: str, phase: str, dispatch_id: str, priority: int) -> None:
    """Queue one phase of a task for a worker (blocking: call off the event loop)."""
    app.send_task(
        RUN_PHASE,
        args=[task_id, phase, dispatch_id],
        priority=HIGHEST_PRIORITY - priority,
        time_limit=phase_time_limit(settings),
    )


def revoke(app: Celery, worker_task_id: str) -> None:
    """Kill the worker process running a phase (blocking): the fallback when a crew ignores its stop."""
    app.control.revoke(worker_task_id, terminate=True, signal="SIGKILL")
