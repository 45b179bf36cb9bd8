"""The waiting line for worker slots: higher priority first, first come first served within a priority."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")


@dataclass(order=True)
class _Entry(Generic[Item]):
    sort_key: tuple[int, int]
    task_id: str = field(compare=False)
    item: Item = field(compare=False)


class TaskQueue(Generic[Item]):
    """A priority queue of tasks (event loop only); one entry per task at most."""

    def __init__(self) -> None:
        self._heap: list[_Entry[Item]] = []
        self._entries: dict[str, _Entry[Item]] = {}
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, task_id: str, priority: int, item: Item) -> None:
        entry = _Entry((-priority, next(self._arrivals)), task_id, item)
        self._entries[task_id] = entry
        heapq.heappush(self._heap, entry)

    def pop(self) -> Item:
        entry = heapq.heappop(self._heap)
        del self._entries[entry.task_id]
        return entry.item

    def remove(self, task_id: str) -> bool:
        """Take a task out of the line; False if it was not waiting."""
        entry = self._entries.pop(task_id, None)
        if entry is None:
            return False
        self._heap.remove(entry)
        heapq.heapify(self._heap)
        return True

    def position(self, task_id: str) -> int | None:
        """1 for the task that starts next, 2 for the one after it...; None if it is not waiting."""
        entry = self._entries.get(task_id)
        if entry is None:
            return None
        return 1 + sum(1 for other in self._heap if other.sort_key < entry.sort_key)
