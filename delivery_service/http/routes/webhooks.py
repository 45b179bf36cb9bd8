"""A task's webhook deliveries: the delivery log, and redelivery of a message."""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends

from delivery_service.http.api_models import RedeliveryResponse, WebhookDeliveriesResponse, WebhookDelivery
from delivery_service.http.dependencies import API_ERRORS, NOT_FOUND, State, error_response, get_record
from delivery_service.service_errors import Conflict, NotFound
from delivery_service.service_layer.webhook_targets import WEBHOOKS_OFF
from delivery_service.store.outbox import Redelivery
from delivery_service.store.records import TaskRecord

router = APIRouter(tags=["webhooks"], responses=API_ERRORS)

Task = Annotated[TaskRecord, Depends(get_record)]


@router.get(
    "/api/task/{task_id}/webhooks",
    response_model=WebhookDeliveriesResponse,
    responses=NOT_FOUND,
    summary="The task's webhook messages: where each went, how many attempts, and how the last one ended",
)
async def deliveries(record: Task, state: State) -> WebhookDeliveriesResponse:
    found = await state.engine.outbox.deliveries(record.task_id)
    operator_urls = set(state.settings.webhook_url_list())
    return WebhookDeliveriesResponse(
        deliveries=[WebhookDelivery.of(delivery, _shown(delivery.url, operator_urls)) for delivery in found]
    )


def _shown(url: str, operator_urls: set[str]) -> str:
    """The operator's WEBHOOK_URLS may carry a secret in their path (chat webhooks do): callers see their
    host only. A task's own webhook_url is shown as given."""
    if url not in operator_urls:
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/... (WEBHOOK_URLS)"


@router.post(
    "/api/task/{task_id}/webhooks/{webhook_id}/redeliver",
    status_code=202,
    response_model=RedeliveryResponse,
    responses={
        404: error_response("No such task, or the task has no message with this webhook_id"),
        409: error_response("The message is still being delivered, or webhooks are off"),
    },
    summary="Send a delivered or failed message again (same webhook-id, a fresh WEBHOOK_MAX_ATTEMPTS)",
)
async def redeliver(webhook_id: str, record: Task, state: State) -> RedeliveryResponse:
    if state.webhook_sender is None:
        raise Conflict(WEBHOOKS_OFF)
    outcome = await state.engine.outbox.redeliver(record.task_id, webhook_id, time.time())
    if outcome is Redelivery.UNKNOWN:
        raise NotFound(
            f"Task {record.task_id} has no webhook message {webhook_id}; GET /api/task/{record.task_id}/webhooks "
            "lists them."
        )
    if outcome is Redelivery.PENDING:
        raise Conflict(
            f"Message {webhook_id} is still being delivered (see its next_attempt_at); redeliver it once it has "
            "been delivered or has failed."
        )
    state.webhook_sender.wake()
    return RedeliveryResponse(webhook_id=webhook_id, status="pending")
