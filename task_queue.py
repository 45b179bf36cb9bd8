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
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, task_id: str, priority: int, item: Item) -> None:
        heapq.heappush(self._heap, _Entry((-priority, next(self._arrivals)), task_id, item))

    def pop(self) -> Item:
        return heapq.heappop(self._heap).item

    def remove(self, task_id: str) -> bool:
        """Take a task out of the line; False if it was not waiting."""
        kept = [entry for entry in self._heap if entry.task_id != task_id]
        removed = len(kept) != len(self._heap)
        if removed:
            self._heap = kept
            heapq.heapify(self._heap)
        return removed

    def position(self, task_id: str) -> int | None:
        """1 for the task that starts next, 2 for the one after it...; None if it is not waiting."""
        for position, entry in enumerate(sorted(self._heap), start=1):
            if entry.task_id == task_id:
                return position
        return None
