"""What changed between two revisions of a delivery, computed by the service from their data.

Every identified item of the documents (of any agent) is compared by its identifier, stable across
revisions (the agents are told to keep them): `added` ids only the new revision has, `removed` only the
old one, `modified` both with different content. A document without data contributes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

_ID_PARTS = re.compile(r"^([A-Z]+)-(\d+)(?:\.(\d+))?$")


class Changes(BaseModel):
    """The contract's `changes` object."""

    added: list[str]
    removed: list[str]
    modified: list[str]


def identified_items(data_by_agent: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """Every item, in any of a document's lists, that has an `id`, by id."""
    items: dict[str, Any] = {}
    for document in data_by_agent.values():
        for value in (document or {}).values():
            for item in value if isinstance(value, list) else []:
                if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                    items[item["id"]] = dict(item)
    return items


def id_order(prefixes: Sequence[str]) -> Callable[[str], tuple[int, int, int, str]]:
    """A sort key: identifiers by their prefix in the order of `prefixes` (the agents' prefixes in the
    pipeline's order: US before AC before NFR before TC...), then by number (AC-1.10 after AC-1.9)."""

    def key(identifier: str) -> tuple[int, int, int, str]:
        match = _ID_PARTS.match(identifier)
        if match is None or match.group(1) not in prefixes:
            return (len(prefixes), 0, 0, identifier)
        prefix, number, sub = match.groups()
        return (prefixes.index(prefix), int(number), int(sub or 0), identifier)

    return key


def diff(
    before: Mapping[str, Mapping[str, Any] | None],
    after: Mapping[str, Mapping[str, Any] | None],
    prefixes: Sequence[str],
) -> Changes:
    """The changes from `before` to `after`, each a mapping of agent name to that agent's data; identifiers
    sorted by `id_order(prefixes)`."""
    old, new = identified_items(before), identified_items(after)
    order = id_order(prefixes)
    return Changes(
        added=sorted(new.keys() - old.keys(), key=order),
        removed=sorted(old.keys() - new.keys(), key=order),
        modified=sorted((key for key in old.keys() & new.keys() if old[key] != new[key]), key=order),
    )
