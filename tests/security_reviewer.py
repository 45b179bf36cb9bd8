"""A fifth agent, registered in this one file: the SecurityReviewer, after the SoftwareDeveloper.

It writes a threat model (threats `SEC-<n>`, each tracing to a user story) with its own schema, renderer
and scripted answer for the fake model. A service loads it with AGENT_PLUGINS=security_reviewer (the
tests put tests/ on the path of every service and worker they start); tests/test_agent_plugins.py and
tests/test_cluster.py run it end to end. Its scripted threat SEC-2 refers to US-9, a story no analysis
has, so that the service's traceability visibly checks the fifth agent's references.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from delivery_service.agents import AgentSpec, Pipeline
from delivery_service.deliverables.schemas import Document, StoryId, Text
from delivery_service.prompts import DATA_PREAMBLE, JSON_ONLY, TaskTemplate
from delivery_service.scripted_answers import Brief

THREAT_ID = r"^SEC-[1-9][0-9]*$"


class Threat(Document):
    id: Annotated[str, StringConstraints(strip_whitespace=True, pattern=THREAT_ID)]
    story_id: StoryId
    threat: Text
    mitigation: Text


class ThreatModel(Document):
    threats: list[Threat] = Field(min_length=1)

    def identifiers(self) -> list[str]:
        return [threat.id for threat in self.threats]

    def references(self) -> list[tuple[str, str]]:
        return [(threat.id, threat.story_id) for threat in self.threats]


def render_threats(data: dict[str, Any], words: dict) -> list[str]:
    """The threat model as markdown, from whole or partial data."""
    lines = ["# Threat model", ""]
    for threat in data.get("threats") or []:
        if isinstance(threat, dict):
            lines.append(
                f"- **{threat.get('id', '')}** ({threat.get('story_id', '')}): {threat.get('threat', '')} "
                f"({words['fix']}: {threat.get('mitigation', '')})"
            )
    return lines


def scripted_threats(brief: Brief) -> dict[str, Any]:
    return {
        "threats": [
            {
                "id": "SEC-1",
                "story_id": "US-1",
                "threat": f"Stored input of {brief.requirement[:40]} replayed as script",
                "mitigation": "escape on output",
            },
            {"id": "SEC-2", "story_id": "US-9", "threat": "A story the analysis lacks", "mitigation": "ask"},
        ]
    }


SECURITY_REVIEWER = AgentSpec(
    name="SecurityReviewer",
    role="Security Reviewer",
    goal="Find the threats to the designed system and how to mitigate them.",
    backstory="You review designs for security before anything is built.",
    approach="Walk through each user story and the design, list threats by story, then mitigations.",
    title="Threat model",
    title_zh="威胁模型",
    templates={
        "full": TaskTemplate(
            description=DATA_PREAMBLE + "Using the documents you are given, write the threat model as JSON of this "
            'shape:\n{{"threats": [{{"id": "SEC-1", "story_id": "US-1", "threat": "...", "mitigation": "..."}}]}}\n'
            + JSON_ONLY,
            expected_output="One JSON object: threats, each tracing to a user story.",
        )
    },
    schema=ThreatModel,
    renderer=render_threats,
    scripted=scripted_threats,
    prefixes=("SEC",),
    traces_to=("US",),
)


def register(agents: Pipeline) -> None:
    agents.add(SECURITY_REVIEWER, after="SoftwareDeveloper")
