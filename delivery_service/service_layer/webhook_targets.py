"""A new task's webhook targets: its own `webhook_url` (checked here, 422 if refused) and WEBHOOK_URLS."""

from __future__ import annotations

from delivery_service.service_errors import InvalidRequest
from delivery_service.settings import Settings
from delivery_service.store.outbox import ALL_MESSAGE_TYPES
from delivery_service.store.records import WebhookTarget
from delivery_service.webhooks.addresses import AllowList, WebhookUrlRefused, connect_address

WEBHOOKS_OFF = (
    "Webhooks are off on this service: WEBHOOK_SECRET is not set, so messages could not be signed. Ask its "
    "operator to set WEBHOOK_SECRET, or leave out webhook_url and follow the task's stream instead."
)


async def webhook_targets(url: str | None, events: list[str] | None, settings: Settings) -> tuple[WebhookTarget, ...]:
    """Where the task's messages go; raises InvalidRequest (422) for a URL that may not receive them."""
    targets: list[WebhookTarget] = []
    if url is not None:
        targets.append(WebhookTarget(await _allowed(url, settings), _types(events)))
    elif events is not None:
        raise InvalidRequest("webhook_events", "webhook_events needs a webhook_url to send them to.")
    if settings.webhooks_enabled():
        targets += [WebhookTarget(url, ALL_MESSAGE_TYPES) for url in settings.webhook_url_list()]
    return tuple(targets)


async def _allowed(url: str, settings: Settings) -> str:
    if not settings.webhooks_enabled():
        raise InvalidRequest("webhook_url", WEBHOOKS_OFF)
    try:
        await connect_address(url, AllowList.of(settings))
    except WebhookUrlRefused as exc:
        raise InvalidRequest("webhook_url", str(exc)) from exc
    except OSError as exc:
        raise InvalidRequest("webhook_url", f"The webhook host does not resolve ({exc}); check the URL.") from exc
    return url


def _types(requested: list[str] | None) -> tuple[str, ...]:
    """The requested message types without repeats, in the contract's order; all of them by default."""
    return ALL_MESSAGE_TYPES if requested is None else tuple(kind for kind in ALL_MESSAGE_TYPES if kind in requested)
