"""The design card's crew factory: build a crew of the registry's agents and map its CrewAI events to task events.

This is the public name for extending the service; the code lives in `delivery_service.crew`
(`event_handler.py`: the handler; `factory.py`: the crew). To add behaviour, subclass the handler and
point CREW_EVENTS_HANDLER at your class (README, "Custom event handlers"):

    from crew_factory import CrewEventsHandler

    class MyCustomHandler(CrewEventsHandler):
        def on_agent_output(self, agent, step, content):
            super().on_agent_output(agent, step, content)
            ...
"""

from delivery_service.crew.event_handler import CrewEventsHandler
from delivery_service.crew.factory import Revision, build_crew, delivery_summary, run_crew
from delivery_service.task_streams import EventSink

__all__ = [
    "CrewEventsHandler",
    "EventSink",
    "Revision",
    "build_crew",
    "delivery_summary",
    "run_crew",
]
