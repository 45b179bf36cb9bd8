"""The markdown people read, rendered from a deliverable's data in the requirement's language.

Identifiers appear verbatim (`US-1`, `AC-1.2`, `TC-3`...), so that a reader can follow them from one
document to the next; headings are English or Chinese (`chinese=True` for a Chinese requirement).
`render_partial` gives the same markdown for as much of a deliverable as a model has written so far.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic_core

from delivery_service.deliverables.gate import Quality
from delivery_service.deliverables.parsing import FENCE_START
from delivery_service.deliverables.schemas import Document, RequirementsAnalysis, TestPlan, Triage
from delivery_service.deliverables.traceability import Traceability

# Each phrase in English, then in Chinese; `WORDS[chinese]` are those of one language.
_PHRASES = {
    "analysis": ("Requirements analysis", "需求分析"),
    "stories": ("User stories", "用户故事"),
    "criteria": ("Acceptance criteria", "验收标准"),
    "nfr": ("Non-functional requirements", "非功能需求"),
    "questions": ("Open questions", "待确认问题"),
    "target": ("target", "目标"),
    "plan": ("Test plan", "测试计划"),
    "cases": ("Test cases", "测试用例"),
    "design": ("Technical design", "技术设计"),
    "components": ("Components", "组件"),
    "data_model": ("Data model", "数据模型"),
    "api": ("API", "接口"),
    "diagram": ("Diagram", "架构图"),
    "risks": ("Risks", "风险"),
    "milestones": ("Milestones", "里程碑"),
    "review": ("Delivery review", "交付评审"),
    "decision": ("Decision", "结论"),
    "issues": ("Issues", "问题"),
    "summary": ("Summary", "总结"),
    "serves": ("serves", "服务于"),
    "fix": ("fix", "修正"),
    "matrix": ("Traceability matrix", "追溯矩阵"),
    "covered": ("covered", "已覆盖"),
    "uncovered": ("not covered", "未覆盖"),
    "go": ("Go", "通过"),
    "no_go": ("No-go", "不通过"),
    "given": ("Given", "假如"),
    "when": ("when", "当"),
    "then": ("then", "那么"),
    "case_columns": (
        ("ID", "Title", "Type", "Covers", "Steps", "Expected"),
        ("编号", "标题", "类型", "覆盖", "步骤", "预期结果"),
    ),
    "api_columns": (("Method", "Path", "Purpose", "Serves"), ("方法", "路径", "用途", "服务于")),
    "matrix_columns": (
        ("Criterion", "Story", "Priority", "Test cases", "Status"),
        ("验收标准", "用户故事", "优先级", "测试用例", "状态"),
    ),
    "priorities": (
        {"must": "Must", "should": "Should", "could": "Could", "wont": "Won't"},
        {"must": "必须", "should": "应该", "could": "可以", "wont": "暂不"},
    ),
    "dangling": ("References to nothing", "引用了不存在的编号"),
    "unserved": ("Stories no component serves", "没有组件服务的用户故事"),
    "changes_since": ("Changes since revision", "自修订版本以来的变更："),
    "change_kinds": (
        {"added": "Added", "removed": "Removed", "modified": "Modified"},
        {"added": "新增", "removed": "删除", "modified": "修改"},
    ),
    "none": ("none", "无"),
    "quality": ("Quality", "质量"),
    "gate": ("Release gate", "发布门禁"),
    "gates": (
        {"pass": "pass", "concerns": "concerns", "fail": "fail", "waived": "waived"},
        {"pass": "通过", "concerns": "有疑虑", "fail": "不通过", "waived": "已豁免"},
    ),
    "waived_by": ("Waived by", "豁免人"),
    "finding_columns": (
        ("ID", "Rule", "Target", "Field", "Finding", "Suggestion"),
        ("编号", "规则", "对象", "字段", "问题", "建议"),
    ),
    "severities": (
        {"error": "Errors", "warning": "Warnings", "info": "Notes"},
        {"error": "错误", "warning": "警告", "info": "提示"},
    ),
}
WORDS = {chinese: {key: pair[chinese] for key, pair in _PHRASES.items()} for chinese in (False, True)}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]


# The renderers read the deliverable's JSON data, whole or as far as a model has written it: a missing
# (or not yet readable) field reads as empty, and a section appears once its field has begun. Each agent's
# registry entry names its renderer (`delivery_service.agents`); `words` are WORDS in the reader's language.
Data = dict[str, Any]
Renderer = Callable[[Data, dict], list[str]]


def _text(item: Data, key: str) -> str:
    value = item.get(key)
    return str(value) if isinstance(value, (str, int, float)) else ""


def _items(item: Data, key: str) -> list[Data]:
    value = item.get(key)
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def _texts(item: Data, key: str) -> list[str]:
    value = item.get(key)
    return [str(entry) for entry in value if isinstance(entry, (str, int, float))] if isinstance(value, list) else []


def _section(title: str, body: list[str]) -> list[str]:
    """A `## title` section, or nothing when `body` is empty."""
    return ["", f"## {title}", "", *body] if body else []


def render(data: Document, renderer: Renderer, chinese: bool = False) -> str:
    """The deliverable as markdown."""
    return _markdown(renderer, data.model_dump(mode="json"), chinese)


def render_partial(renderer: Renderer, data: Data, chinese: bool = False) -> str:
    """The markdown of as much of a deliverable as `data` holds (a partial-JSON parser's reading of an
    answer still being written): what `render` gives for the whole, growing with it. A triage reads as one."""
    return _markdown(render_triage if Triage.model_fields.keys() & data.keys() else renderer, data, chinese)


def live_markdown(renderer: Renderer | None, text: str, chinese: bool = False) -> str:
    """An agent's answer as it is being written, for people: the deliverable's JSON so far rendered as its
    document (after any text the model wrote before it), or the text as it is when it holds no JSON yet or
    none that parses, or when there is no `renderer` (an agent this reader does not know)."""
    found = _json_so_far(text)
    if found is None or renderer is None:
        return text
    before, written = found
    try:
        data = pydantic_core.from_json(written, allow_partial="trailing-strings")
    except ValueError:
        return text
    if not isinstance(data, dict):
        return text
    document = render_partial(renderer, data, chinese)
    return f"{before.strip()}\n\n{document}" if before.strip() else document


def _json_so_far(text: str) -> tuple[str, str] | None:
    """(the text before the JSON, the JSON written so far): a ```json fence's content, else from the first `{`."""
    fence = FENCE_START.search(text)
    if fence is not None:
        body = text[fence.end() :]
        return text[: fence.start()], body.split("```", 1)[0]
    start = text.find("{")
    return (text[:start], text[start:]) if start >= 0 else None


def _markdown(renderer: Renderer, data: Data, chinese: bool) -> str:
    return "\n".join(renderer(data, WORDS[chinese])).strip() + "\n"


def render_analysis(data: Data, words: dict) -> list[str]:
    lines = [f"# {words['analysis']}", "", f"## {words['stories']}", ""]
    priority = words["priorities"]
    for s in _items(data, "user_stories"):
        lines.append(f"- **{_text(s, 'id')} ({priority.get(_text(s, 'priority'), '')}):** {_text(s, 'story')}")
    if "acceptance_criteria" in data:
        lines += ["", f"## {words['criteria']}", ""]
    lines += [
        f"- **{_text(c, 'id')}** ({_text(c, 'story_id')}): {words['given']} {_text(c, 'given')}, "
        f"{words['when']} {_text(c, 'when')}, {words['then']} {_text(c, 'then')}"
        for c in _items(data, "acceptance_criteria")
    ]
    nfr = [
        f"- **{_text(n, 'id')}:** {_text(n, 'requirement')} ({words['target']}: {_text(n, 'target')})"
        for n in _items(data, "non_functional")
    ]
    lines += _section(words["nfr"], nfr)
    return lines + _section(words["questions"], [f"- {q}" for q in _texts(data, "open_questions")])


def render_plan(data: Data, words: dict) -> list[str]:
    rows = [
        [
            _text(c, "id"),
            _text(c, "title"),
            _text(c, "type"),
            ", ".join(_texts(c, "covers")),
            "; ".join(_texts(c, "steps")),
            _text(c, "expected"),
        ]
        for c in _items(data, "test_cases")
    ]
    return [f"# {words['plan']}", "", f"## {words['cases']}", "", *_table(words["case_columns"], rows)]


def render_design(data: Data, words: dict) -> list[str]:
    lines = [f"# {words['design']}", "", f"## {words['components']}", ""]
    for component in _items(data, "components"):
        serves = f" ({words['serves']} {', '.join(_texts(component, 'serves'))})" if _texts(component, "serves") else ""
        lines.append(
            f"- **{_text(component, 'id')} {_text(component, 'name')}:** {_text(component, 'responsibility')}{serves}"
        )
    entities = [f"- **{_text(e, 'entity')}:** {', '.join(_texts(e, 'fields'))}" for e in _items(data, "data_model")]
    lines += _section(words["data_model"], entities)
    rows = [
        [_text(e, "method"), f"`{_text(e, 'path')}`", _text(e, "purpose"), ", ".join(_texts(e, "serves"))]
        for e in _items(data, "api")
    ]
    lines += _section(words["api"], _table(words["api_columns"], rows) if rows else [])
    diagram = _text(data, "diagram")
    lines += _section(words["diagram"], ["```mermaid", diagram, "```"] if diagram else [])
    risks = [
        f"- **{_text(r, 'id')}:** {_text(r, 'risk')} ({words['fix']}: {_text(r, 'mitigation')})"
        for r in _items(data, "risks")
    ]
    lines += _section(words["risks"], risks)
    milestones = [f"- **{_text(m, 'name')}:** {', '.join(_texts(m, 'scope'))}" for m in _items(data, "milestones")]
    return lines + _section(words["milestones"], milestones)


def render_review(data: Data, words: dict) -> list[str]:
    lines = [f"# {words['review']}", ""]
    if "decision" in data:
        lines += [f"## {words['decision']}: {words.get(_text(data, 'decision'), '')}", ""]
    lines += [f"- {reason}" for reason in _texts(data, "reasons")]
    if _items(data, "issues"):
        lines += ["", f"## {words['issues']}", ""]
        for issue in _items(data, "issues"):
            ids = f"{', '.join(_texts(issue, 'ids'))}: " if _texts(issue, "ids") else ""
            lines.append(f"- {ids}{_text(issue, 'problem')} ({words['fix']}: {_text(issue, 'fix')})")
    if "summary" in data:
        lines += ["", f"## {words['summary']}", "", _text(data, "summary")]
    return lines


def render_triage(data: Data, words: dict) -> list[str]:
    return [f"{_text(data, 'classification')}: re-run from {_text(data, 'rerun_from')}. {_text(data, 'reason')}"]


def traceability_matrix(
    analysis: RequirementsAnalysis, test_plan: TestPlan | None, traceability: Traceability, chinese: bool = False
) -> str:
    """Each acceptance criterion with its story, priority and the test cases covering it, then the findings."""
    words = WORDS[chinese]
    priorities = {story.id: story.priority for story in analysis.user_stories}
    cases = test_plan.test_cases if test_plan else []
    uncovered = set(traceability.uncovered)
    rows = []
    for criterion in analysis.acceptance_criteria:
        covering = [case.id for case in cases if criterion.id in case.covers]
        status = words["uncovered"] if criterion.id in uncovered else words["covered"]
        priority = words["priorities"][priorities[criterion.story_id]]
        rows.append([criterion.id, criterion.story_id, priority, ", ".join(covering) or "-", status])
    lines = [f"## {words['matrix']}", "", *_table(words["matrix_columns"], rows)]
    if traceability.dangling:
        lines += ["", f"{words['dangling']}: " + ", ".join(f"{d['from']} → {d['to']}" for d in traceability.dangling)]
    if traceability.stories_without_component:
        lines += ["", f"{words['unserved']}: " + ", ".join(traceability.stories_without_component)]
    return "\n".join(lines) + "\n"


def quality_section(quality: Quality, chinese: bool = False) -> str:
    """The gate and its reasons (and a waiver), then the findings by severity."""
    words, gate = WORDS[chinese], quality.gate
    lines = [f"## {words['quality']}", "", f"**{words['gate']}: {words['gates'][gate.status]}**", ""]
    lines += [f"- {reason}" for reason in gate.reasons]
    if gate.waiver is not None:
        lines += ["", f"{words['waived_by']} {gate.waiver.by} ({gate.waiver.at}): {gate.waiver.reason}"]
    for severity, heading in words["severities"].items():
        found = [finding for finding in quality.findings if finding.severity == severity]
        if found:
            rows = [[f.id, f.rule, f.target, f.field, f.message, f.suggestion] for f in found]
            lines += ["", f"### {heading}", "", *_table(words["finding_columns"], rows)]
    return "\n".join(lines) + "\n"


def changes_section(changes: dict[str, list[str]], since: int, chinese: bool = False) -> str:
    """What a revision changed, by identifier: the section the service ends a revision's review with."""
    words = WORDS[chinese]
    lines = [f"## {words['changes_since']} {since}", ""]
    for kind, label in words["change_kinds"].items():
        lines.append(f"- {label}: {', '.join(changes.get(kind, [])) or words['none']}")
    return "\n".join(lines) + "\n"
