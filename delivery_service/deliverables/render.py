"""The markdown people read, rendered from a deliverable's data in the requirement's language.

Identifiers appear verbatim (`US-1`, `AC-1.2`, `TC-3`...), so that a reader can follow them from one
document to the next; headings are English or Chinese (`chinese=True` for a Chinese requirement).
"""

from __future__ import annotations

from delivery_service.deliverables.schemas import (
    DeliveryReview,
    Document,
    RequirementsAnalysis,
    TechnicalDesign,
    TestPlan,
    Triage,
)
from delivery_service.deliverables.traceability import Traceability

_WORDS = {
    False: {
        "analysis": "Requirements analysis", "stories": "User stories", "criteria": "Acceptance criteria",
        "nfr": "Non-functional requirements", "questions": "Open questions", "target": "target",
        "plan": "Test plan", "cases": "Test cases", "design": "Technical design", "components": "Components",
        "data_model": "Data model", "api": "API", "diagram": "Diagram", "risks": "Risks",
        "milestones": "Milestones", "review": "Delivery review", "decision": "Decision", "issues": "Issues",
        "summary": "Summary", "serves": "serves", "fix": "fix", "matrix": "Traceability matrix",
        "covered": "covered", "uncovered": "not covered", "go": "Go", "no_go": "No-go",
        "given": "Given", "when": "when", "then": "then",
        "case_columns": ("ID", "Title", "Type", "Covers", "Steps", "Expected"),
        "api_columns": ("Method", "Path", "Purpose", "Serves"),
        "matrix_columns": ("Criterion", "Story", "Priority", "Test cases", "Status"),
        "priorities": {"must": "Must", "should": "Should", "could": "Could", "wont": "Won't"},
        "dangling": "References to nothing", "unserved": "Stories no component serves",
    },
    True: {
        "analysis": "需求分析", "stories": "用户故事", "criteria": "验收标准", "nfr": "非功能需求",
        "questions": "待确认问题", "target": "目标", "plan": "测试计划", "cases": "测试用例",
        "design": "技术设计", "components": "组件", "data_model": "数据模型", "api": "接口", "diagram": "架构图",
        "risks": "风险", "milestones": "里程碑", "review": "交付评审", "decision": "结论", "issues": "问题",
        "summary": "总结", "serves": "服务于", "fix": "修正", "matrix": "追溯矩阵", "covered": "已覆盖",
        "uncovered": "未覆盖", "go": "通过", "no_go": "不通过", "given": "假如", "when": "当", "then": "那么",
        "case_columns": ("编号", "标题", "类型", "覆盖", "步骤", "预期结果"),
        "api_columns": ("方法", "路径", "用途", "服务于"),
        "matrix_columns": ("验收标准", "用户故事", "优先级", "测试用例", "状态"),
        "priorities": {"must": "必须", "should": "应该", "could": "可以", "wont": "暂不"},
        "dangling": "引用了不存在的编号", "unserved": "没有组件服务的用户故事",
    },
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]


def render(data: Document, chinese: bool = False) -> str:
    """The deliverable as markdown."""
    words = _WORDS[chinese]
    if isinstance(data, RequirementsAnalysis):
        lines = _analysis(data, words)
    elif isinstance(data, TestPlan):
        lines = _plan(data, words)
    elif isinstance(data, TechnicalDesign):
        lines = _design(data, words)
    elif isinstance(data, DeliveryReview):
        lines = _review(data, words)
    elif isinstance(data, Triage):
        lines = [f"{data.classification}: re-run from {data.rerun_from}. {data.reason}"]
    else:
        raise TypeError(f"no markdown for {type(data).__name__}")
    return "\n".join(lines).strip() + "\n"


def _analysis(data: RequirementsAnalysis, words: dict) -> list[str]:
    lines = [f"# {words['analysis']}", "", f"## {words['stories']}", ""]
    lines += [f"- **{s.id} ({words['priorities'][s.priority]}):** {s.story}" for s in data.user_stories]
    lines += ["", f"## {words['criteria']}", ""]
    lines += [
        f"- **{c.id}** ({c.story_id}): {words['given']} {c.given}, {words['when']} {c.when}, {words['then']} {c.then}"
        for c in data.acceptance_criteria
    ]
    if data.non_functional:
        lines += ["", f"## {words['nfr']}", ""]
        lines += [f"- **{n.id}:** {n.requirement} ({words['target']}: {n.target})" for n in data.non_functional]
    if data.open_questions:
        lines += ["", f"## {words['questions']}", ""] + [f"- {question}" for question in data.open_questions]
    return lines


def _plan(data: TestPlan, words: dict) -> list[str]:
    rows = [
        [case.id, case.title, case.type, ", ".join(case.covers), "; ".join(case.steps), case.expected]
        for case in data.test_cases
    ]
    return [f"# {words['plan']}", "", f"## {words['cases']}", "", *_table(words["case_columns"], rows)]


def _design(data: TechnicalDesign, words: dict) -> list[str]:
    lines = [f"# {words['design']}", "", f"## {words['components']}", ""]
    for component in data.components:
        serves = f" ({words['serves']} {', '.join(component.serves)})" if component.serves else ""
        lines.append(f"- **{component.id} {component.name}:** {component.responsibility}{serves}")
    if data.data_model:
        lines += ["", f"## {words['data_model']}", ""]
        lines += [f"- **{entity.entity}:** {', '.join(entity.fields)}" for entity in data.data_model]
    if data.api:
        rows = [[e.method, f"`{e.path}`", e.purpose, ", ".join(e.serves)] for e in data.api]
        lines += ["", f"## {words['api']}", "", *_table(words["api_columns"], rows)]
    if data.diagram:
        lines += ["", f"## {words['diagram']}", "", "```mermaid", data.diagram, "```"]
    if data.risks:
        lines += ["", f"## {words['risks']}", ""]
        lines += [f"- **{risk.id}:** {risk.risk} ({words['fix']}: {risk.mitigation})" for risk in data.risks]
    if data.milestones:
        lines += ["", f"## {words['milestones']}", ""]
        lines += [f"- **{m.name}:** {', '.join(m.scope)}" for m in data.milestones]
    return lines


def _review(data: DeliveryReview, words: dict) -> list[str]:
    lines = [f"# {words['review']}", "", f"## {words['decision']}: {words[data.decision]}", ""]
    lines += [f"- {reason}" for reason in data.reasons]
    if data.issues:
        lines += ["", f"## {words['issues']}", ""]
        for issue in data.issues:
            ids = f"{', '.join(issue.ids)}: " if issue.ids else ""
            lines.append(f"- {ids}{issue.problem} ({words['fix']}: {issue.fix})")
    return [*lines, "", f"## {words['summary']}", "", data.summary]


def traceability_matrix(
    analysis: RequirementsAnalysis, test_plan: TestPlan | None, traceability: Traceability, chinese: bool = False
) -> str:
    """Each acceptance criterion with its story, priority and the test cases covering it, then the findings."""
    words = _WORDS[chinese]
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
