"""The multi-agent software delivery service: four CrewAI agents turn a requirement into deliverables,
and every step streams live as sequenced events.

One subpackage per concern; ARCHITECTURE.md at the repository's root is the map (which package does
what, which may import which, and the path of an event from a crew to a client).
"""

__version__ = "0.1.0"
