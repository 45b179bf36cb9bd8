"""The design card's stream manager: one live, sequenced, replayable event stream per task.

The code lives in `delivery_service/task_streams.py` (the embedded mode) and `delivery_service/cluster/replica_streams.py`
(replicas reading Redis Streams); this module keeps the design card's name for the first.
"""

from delivery_service.task_streams import (
    StreamLimitExceeded,
    StreamLimits,
    StreamManager,
    StreamView,
    TaskStream,
)

__all__ = ["StreamLimitExceeded", "StreamLimits", "StreamManager", "StreamView", "TaskStream"]
