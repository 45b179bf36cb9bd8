"""The engine seam: each mode's engine, store, streams and runner has every member its protocol declares,
with the same parameters, so the layers above (and `TaskControl`, over a runner's log and dispatch) can
call any of them whichever mode runs."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from delivery_service.cluster.cluster_runner import ClusterRunner
from delivery_service.cluster.replica_streams import ClusterStreams
from delivery_service.cluster.store import RedisTaskStore
from delivery_service.engines.cluster import ClusterEngine
from delivery_service.engines.embedded import EmbeddedEngine
from delivery_service.engines.task_engine import TaskEngine
from delivery_service.runs.task_control import PhaseDispatch, TaskLog
from delivery_service.runs.task_runner import TaskRunner
from delivery_service.store.base import TaskReads, TaskStore
from delivery_service.store.memory import MemoryTaskStore
from delivery_service.store.sqlite import SqliteTaskStore
from delivery_service.task_streams import StreamManager, TaskStreams

IMPLEMENTATIONS = [
    (TaskEngine, EmbeddedEngine),
    (TaskEngine, ClusterEngine),
    (TaskLog, TaskRunner),
    (TaskLog, ClusterRunner),
    (PhaseDispatch, TaskRunner),
    (PhaseDispatch, ClusterRunner),
    (TaskReads, RedisTaskStore),
    (TaskStore, SqliteTaskStore),
    (TaskStore, MemoryTaskStore),
    (TaskStreams, StreamManager),
    (TaskStreams, ClusterStreams),
]


def _members(protocol: type) -> dict[str, Any]:
    """The methods and properties a protocol declares (its own and its bases'), by name."""
    found: dict[str, Any] = {}
    for base in reversed(protocol.__mro__):
        if base is object or not getattr(base, "_is_protocol", False):
            continue
        found |= {name: value for name, value in vars(base).items() if not name.startswith("_")}
    return found


def _attributes(protocol: type) -> set[str]:
    protocols = [base for base in protocol.__mro__ if getattr(base, "_is_protocol", False)]
    return {name for base in protocols for name in getattr(base, "__annotations__", {})}


def _source(implementation: type) -> str:
    return "".join(inspect.getsource(cls) for cls in implementation.__mro__ if cls.__module__.startswith("delivery"))


def _parameters(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(("protocol", "implementation"), IMPLEMENTATIONS, ids=lambda item: item.__name__)
def test_every_declared_method_exists_with_its_parameters(protocol: type, implementation: type) -> None:
    for name, declared in _members(protocol).items():
        found = inspect.getattr_static(implementation, name, None)
        if isinstance(declared, property):  # a property, or an attribute set on the instance
            assert isinstance(found, property) or f"self.{name} =" in _source(implementation), f"no {name}"
            continue
        assert found is not None, f"{implementation.__name__} lacks {name}"
        if inspect.isfunction(declared):
            assert _parameters(found) == _parameters(declared), f"{implementation.__name__}.{name}'s parameters"
            is_async = inspect.iscoroutinefunction(declared)
            assert inspect.iscoroutinefunction(found) == is_async, f"{implementation.__name__}.{name}: async or not"


@pytest.mark.parametrize(("protocol", "implementation"), IMPLEMENTATIONS, ids=lambda item: item.__name__)
def test_every_declared_attribute_is_set(protocol: type, implementation: type) -> None:
    source = _source(implementation)
    for name in _attributes(protocol):
        assert f"self.{name} =" in source or f"def {name}(" in source, f"{implementation.__name__} never sets {name}"
