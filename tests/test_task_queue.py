"""The waiting line on its own: priority order, arrival order within a priority, positions, removal."""

from __future__ import annotations

from delivery_service.runs.queue import TaskQueue


def test_priority_then_arrival_order_with_positions_and_removal() -> None:
    line: TaskQueue[str] = TaskQueue()
    for task_id, priority in (("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", 9)):
        line.push(task_id, priority, f"item {task_id}")
    assert [line.position(task_id) for task_id in "ebdac"] == [1, 2, 3, 4, 5]
    assert line.position("unknown") is None
    assert line.remove("d") and not line.remove("d")
    assert [line.position(task_id) for task_id in "ebac"] == [1, 2, 3, 4] and line.position("d") is None
    assert [line.pop() for _ in range(len(line))] == ["item e", "item b", "item a", "item c"]
    assert line.position("a") is None and len(line) == 0
