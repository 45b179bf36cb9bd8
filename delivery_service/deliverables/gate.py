"""The release gate: `fail`, `concerns` or `pass`, computed from the traceability and the findings, never by
a model; `waived` once a person has waived a gate that did not pass (docs/quality.md).

`fail`: a must-have criterion without a test case, a document that could not be read as data, or any
`error` finding. `concerns`: coverage below the policy's minimum, or any `warning` finding. `pass`: neither.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from delivery_service.deliverables.findings import Finding, find
from delivery_service.deliverables.schemas import Decision, DeliveryReview
from delivery_service.deliverables.traceability import Documents, Traceability, gap_reason, must_gaps

GateStatus = Literal["pass", "concerns", "fail", "waived"]


class Waiver(BaseModel):
    """A person's waiver of a gate that did not pass: why, when (ISO 8601 UTC) and by whom (the key's name)."""

    reason: str
    at: str
    by: str


class GatePolicy(BaseModel):
    min_coverage: float


class Gate(BaseModel):
    status: GateStatus
    reasons: list[str]
    policy: GatePolicy
    waiver: Waiver | None = None


class Quality(BaseModel):
    """The contract's `quality` object: the findings, their counts by severity, and the gate."""

    findings: list[Finding]
    counts: dict[str, int]
    gate: Gate


def counted(counts: Mapping[str, int]) -> str:
    """Findings by severity in words: `0 errors, 1 warning, 2 notes`."""
    numbers = [
        (counts.get(severity, 0), word)
        for severity, word in (("error", "error"), ("warning", "warning"), ("info", "note"))
    ]
    return ", ".join(f"{number} {word}{'' if number == 1 else 's'}" for number, word in numbers)


def _listed(findings: list[Finding]) -> str:
    return ", ".join(f"{finding.target} ({finding.rule})" for finding in findings)


def gate(documents: Documents, traceability: Traceability, findings: list[Finding], policy: GatePolicy) -> Gate:
    """The computed gate (never `waived`), its reasons naming the identifiers."""
    failing, concerning = [], []
    for kind, document in (("requirements analysis", documents.analysis), ("test plan", documents.test_plan)):
        if document is None:
            failing.append(f"The {kind} could not be read as structured data, so coverage is unproven.")
    if gaps := must_gaps(documents.analysis, traceability):
        failing.append(gap_reason(gaps))
    if errors := [finding for finding in findings if finding.severity == "error"]:
        failing.append(f"Error findings: {_listed(errors)}.")
    if traceability.coverage < policy.min_coverage:
        concerning.append(
            f"Coverage {traceability.coverage:.0%} is below the minimum of {policy.min_coverage:.0%} "
            f"(not covered: {', '.join(traceability.uncovered) or 'none'})."
        )
    if warnings := [finding for finding in findings if finding.severity == "warning"]:
        concerning.append(f"Warning findings: {_listed(warnings)}.")
    if failing:
        return Gate(status="fail", reasons=failing + concerning, policy=policy)
    if concerning:
        return Gate(status="concerns", reasons=concerning, policy=policy)
    passed = f"Coverage {traceability.coverage:.0%}, every must-have criterion tested, no error or warning findings."
    return Gate(status="pass", reasons=[passed], policy=policy)


def assess_quality(
    documents: Documents,
    traceability: Traceability,
    policy: GatePolicy,
    *,
    chinese: bool = False,
    waiver: Waiver | None = None,
) -> Quality:
    """The findings and the gate of a delivery's documents; with a `waiver`, a gate that did not pass is `waived`."""
    findings = find(documents, traceability, chinese)
    computed = gate(documents, traceability, findings, policy)
    if waiver is not None and computed.status in ("fail", "concerns"):
        computed = computed.model_copy(update={"status": "waived", "waiver": waiver})
    counts = Counter(finding.severity for finding in findings)
    return Quality(
        findings=findings,
        counts={severity: counts[severity] for severity in ("error", "warning", "info")},
        gate=computed,
    )


def decide(review: DeliveryReview | None, gate: Gate) -> tuple[Decision, list[str]]:
    """The delivery's decision and its reasons: the Coordinator's, but never `go` over a failing gate nor
    without a structured review (nothing vouches for it); `go` once a person has waived the gate."""
    reasons = list(review.reasons) if review else []
    if gate.waiver is not None:
        return "go", [*reasons, f"The gate was waived by {gate.waiver.by}: {gate.waiver.reason}"]
    if review is None:
        return "no_go", [*reasons, "The review could not be read as structured data, so nothing vouches for a go."]
    if gate.status == "fail":
        return "no_go", reasons + [reason for reason in gate.reasons if reason not in reasons]
    return review.decision, reasons


@dataclass(frozen=True)
class Assessment:
    """What the service computes of a finished delivery: its traceability, quality and decision."""

    traceability: Traceability
    quality: Quality
    decision: Decision


def assess(
    documents: Documents, policy: GatePolicy, *, chinese: bool = False, waiver: Waiver | None = None
) -> Assessment:
    traceability = documents.traceability()
    quality = assess_quality(documents, traceability, policy, chinese=chinese, waiver=waiver)
    decision, _ = decide(documents.review, quality.gate)
    return Assessment(traceability, quality, decision)
