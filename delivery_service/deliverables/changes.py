"""What changed between two revisions of a delivery, computed by the service from their data.

Every identified item of the analysis, the test plan and the design (user stories, acceptance
criteria, non-functional requirements, test cases, components, risks) is compared by its identifier:
`added` are ids only the new revision has, `removed` ids only the old one had, `modified` ids both
have with different content. Identifiers are stable across revisions (the agents are told to keep
them), so US-1 in both is the same story. A document without data (the model's output could not be
brought into shape) contributes nothing; the review has no identified items.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

# The lists of identified items in each agent's data.
IDENTIFIED_LISTS: dict[str, tuple[str, ...]] = {
    "ProductManager": ("user_stories", "acceptance_criteria", "non_functional"),
    "QAEngineer": ("test_cases",),
    "SoftwareDeveloper": ("components", "risks"),
}
_PREFIX_ORDER = ("US", "AC", "NFR", "TC", "C", "R")
_ID_PARTS = re.compile(r"^([A-Z]+)-(\d+)(?:\.(\d+))?$")


class Changes(BaseModel):
    """The contract's `changes` object."""

    added: list[str]
    removed: list[str]
    modified: list[str]


def identified_items(data_by_agent: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """Every identified item of the documents, by id."""
    items: dict[str, Any] = {}
    for agent, lists in IDENTIFIED_LISTS.items():
        document = data_by_agent.get(agent) or {}
        for name in lists:
            for item in document.get(name) or []:
                if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                    items[item["id"]] = dict(item)
    return items


def id_order(identifier: str) -> tuple[int, int, int, str]:
    """US before AC before NFR before TC before C before R, then by number (AC-1.10 after AC-1.9)."""
    match = _ID_PARTS.match(identifier)
    if match is None or match.group(1) not in _PREFIX_ORDER:
        return (len(_PREFIX_ORDER), 0, 0, identifier)
    prefix, number, sub = match.groups()
    return (_PREFIX_ORDER.index(prefix), int(number), int(sub or 0), identifier)


def diff(before: Mapping[str, Mapping[str, Any] | None], after: Mapping[str, Mapping[str, Any] | None]) -> Changes:
    """The changes from `before` to `after`, each a mapping of agent name to that agent's data."""
    old, new = identified_items(before), identified_items(after)
    return Changes(
        added=sorted(new.keys() - old.keys(), key=id_order),
        removed=sorted(old.keys() - new.keys(), key=id_order),
        modified=sorted((key for key in old.keys() & new.keys() if old[key] != new[key]), key=id_order),
    )
