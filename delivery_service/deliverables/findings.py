"""Quality findings: deterministic rules over a delivery's structured documents, never a model (docs/quality.md).

Each rule is a small function of a `Context` (the documents, their traceability, the language of the words)
returning `Hit`s in document order; `find` runs `RULES` in order and numbers the findings `Q-1`, `Q-2`, ...
A later rule (`failed-test`, from uploaded test results) is one more function and one more `Rule` in `RULES`;
what it needs beyond the documents becomes one more field of `Context`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pydantic import BaseModel

from delivery_service.deliverables.schemas import AcceptanceCriterion, UserStory
from delivery_service.deliverables.traceability import Documents, Traceability

Severity = Literal["error", "warning", "info"]


class Finding(BaseModel):
    id: str
    rule: str
    severity: Severity
    target: str
    field: str
    message: str
    suggestion: str


class Hit(NamedTuple):
    """A finding before its rule's name and its id are known."""

    severity: Severity
    target: str
    field: str
    message: str
    suggestion: str


# What each finding says (message, suggestion), formatted with the rule's values; English, then Chinese.
WORDS: tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]] = (
    {
        "vague": ("unverifiable term(s) {terms} in {quote}", "Use a number with a unit or a threshold instead."),
        "unmeasurable": ("target {quote} is not measurable", "Give a number with a unit, or a threshold (< 200 ms)."),
        "placeholder": ("{field} is a placeholder: {quote}", "Write the real {field} of the criterion."),
        "repeats": ("{field} repeats {other}: {quote}", "Make given, when and then three different statements."),
        "compound": ("then joins outcomes with {joiners}: {quote}", "Split it into one criterion per outcome."),
        "story-form": ("no role and goal in {quote}", "Write it as: As a <role>, I want <goal>, so that <benefit>."),
        "untested": ("no test case covers {target}", "Add a test case whose covers lists {target}."),
        "dangling": ("{target} refers to {missing}, defined nowhere", "Define {missing}, or refer to one that exists."),
        "unserved": ("no component or endpoint serves {target}", "Add {target} to the serves of its component."),
        "no-steps": ("no real steps: {quote}", "List the actions a tester performs, in order."),
        "no-expected": ("no expected result: {quote}", "State the observable result that makes the test pass."),
        "duplicate": ("{target} repeats {other}: {quote}", "Remove {target}, or say how it differs from {other}."),
    },
    {
        "vague": ("{quote} 含无法验证的词语：{terms}", "改为可度量的表述：带单位的数值或阈值。"),
        "unmeasurable": ("目标 {quote} 无法度量", "写出带单位的数值或阈值，例如 p95 < 200 毫秒。"),
        "placeholder": ("{field} 只是占位：{quote}", "写出该验收标准真正的 {field}。"),
        "repeats": ("{field} 与 {other} 重复：{quote}", "前置条件、操作和结果应是三句不同的话。"),
        "compound": ("then 用“{joiners}”连接了多个结果：{quote}", "拆成每个结果一条验收标准。"),
        "story-form": ("{quote} 没有写明角色和目标", "写成：作为<角色>，我希望<目标>，以便<价值>。"),
        "untested": ("没有测试用例覆盖 {target}", "添加一个 covers 含 {target} 的测试用例。"),
        "dangling": ("{target} 引用的 {missing} 不存在", "补充定义 {missing}，或改为引用已有的标识。"),
        "unserved": ("没有组件或接口实现 {target}", "在实现它的组件的 serves 中加入 {target}。"),
        "no-steps": ("没有实际步骤：{quote}", "按顺序写出测试者要执行的操作。"),
        "no-expected": ("没有预期结果：{quote}", "写出判定测试通过的可观察结果。"),
        "duplicate": ("{target} 与 {other} 重复：{quote}", "删除 {target}，或写明它与 {other} 的区别。"),
    },
)


@dataclass(frozen=True)
class Context:
    documents: Documents
    traceability: Traceability
    chinese: bool = False

    def hit(self, severity: Severity, target: str, field: str, words: str, **values: str) -> Hit:
        message, suggestion = WORDS[self.chinese][words]
        values = {"target": target, "field": field, **values}
        return Hit(severity, target, field, message.format(**values), suggestion.format(**values))

    @property
    def stories(self) -> list[UserStory]:
        return self.documents.analysis.user_stories if self.documents.analysis else []

    @property
    def criteria(self) -> list[AcceptanceCriterion]:
        return self.documents.analysis.acceptance_criteria if self.documents.analysis else []


@dataclass(frozen=True)
class Rule:
    name: str
    source: str
    check: Callable[[Context], list[Hit]]


# --- the words -----------------------------------------------------------------------------------------------
_VAGUE_EN = re.compile(
    r"\b(?:fast(?:er)?|quick(?:ly)?|easy|easily|simple|user[- ]friendly|intuitive(?:ly)?|efficient(?:ly)?"
    r"|flexible|robust|seamless(?:ly)?|appropriate(?:ly)?|adequate(?:ly)?|reasonabl[ey]|sufficient(?:ly)?"
    r"|as soon as possible|asap|etc\b\.?|and so on)(?![\w-])",
    re.IGNORECASE,
)
_VAGUE_ZH = re.compile(r"快速|迅速|简单|方便|友好|高效|灵活|适当|尽快|尽可能|等等|易用|直观|合理|足够")
_NUMBER = r"(?<![A-Za-z0-9_.\-])\d+(?:[.,]\d+)*"
_MEASURE = re.compile(
    rf"{_NUMBER}\s*(?:%|‰|(?!(?:of|and|or|to|the|a|an|in|on|at|for|is|are)\b)[A-Za-zµ°]+|[\u4e00-\u9fff])"
    r"|(?:[<>≤≥≦≧]=?|\b(?:under|below|over|above|within|at (?:least|most)|(?:less|more|fewer) than|up to"
    r"|no (?:more|less) than|max(?:imum)?|min(?:imum)?)\b|不超过|不少于|不低于|不高于|至少|至多|最多|最少|低于|高于"
    rf"|小于|大于|少于|多于)\s*{_NUMBER}",
    re.IGNORECASE,
)
_EDGES = " \t\n.。…?？!！:：;；,，、-_*"
_PLACEHOLDER = re.compile(
    r"(?:tbd|todo|tbc|n/?a|to be (?:determined|defined|decided|confirmed)|待定|待补充|待确认|未定)(?:\s*[:：].*)?",
    re.IGNORECASE,
)
_JOINERS = re.compile(r"(?<=\s)(?:and/or|and|or)(?=\s)|以及|并且|和|或", re.IGNORECASE)
_STORY_FORM = re.compile(
    r"^\s*(?:as (?:an?|the)\s+\S.*?,?\s+(?:i\s+(?:want|need|can|would like|wish)|i['’]d like)\b\s*\S"
    r"|作为.+?[，,、\s]?\s*我(?:希望|想|要|需要|能够|可以)\s*\S)",
    re.IGNORECASE | re.DOTALL,
)
_SEVERITY_BY_PRIORITY: dict[str, Severity] = {"must": "error", "should": "warning", "could": "info"}


def _normal(text: str) -> str:
    """Lower case, blanks collapsed, trailing punctuation dropped: what two texts compare by."""
    return " ".join(text.lower().split()).rstrip(" .。!！;；,，")


def _placeholder(text: str) -> bool:
    stripped = text.strip(_EDGES)
    return not stripped or _PLACEHOLDER.fullmatch(stripped) is not None


def _measurable(text: str) -> bool:
    return _MEASURE.search(text) is not None


def _quote(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return f"“{flat if len(flat) <= limit else flat[: limit - 1] + '…'}”"


def _named(found: list[str]) -> str:
    return ", ".join(dict.fromkeys(found))


# --- the rules -----------------------------------------------------------------------------------------------
def vague_term(context: Context) -> list[Hit]:
    """A story or a criterion's `then` with a term nobody can verify, unless it is also measured.

    Trips: "As a user, I want a fast search". Does not: "the list responds quickly, within 200 ms"."""
    fields = [(story.id, "story", story.story) for story in context.stories]
    fields += [(criterion.id, "then", criterion.then) for criterion in context.criteria]
    hits = []
    for target, field, text in fields:
        terms = [m.group().lower() for m in _VAGUE_EN.finditer(text)] + _VAGUE_ZH.findall(text)
        if terms and not _measurable(text):
            hits.append(context.hit("warning", target, field, "vague", terms=_named(terms), quote=_quote(text)))
    return hits


def unmeasurable_nfr(context: Context) -> list[Hit]:
    """A non-functional requirement whose `target` has no number with a unit or threshold.

    Trips: target "fast". Does not: "p95 < 200 ms", "99.9%", "200毫秒内", "1000 concurrent users"."""
    analysis = context.documents.analysis
    return [
        context.hit("error", nfr.id, "target", "unmeasurable", quote=_quote(nfr.target))
        for nfr in (analysis.non_functional if analysis else [])
        if not _measurable(nfr.target)
    ]


def incomplete_criterion(context: Context) -> list[Hit]:
    """A criterion whose given, when or then is empty, a placeholder, or repeats another of its parts.

    Trips: then "TBD"; given "a cart", when "I pay", then "I pay". Does not: then "the order is confirmed"."""
    hits = []
    for criterion in context.criteria:
        seen: dict[str, str] = {}
        for field in ("given", "when", "then"):
            text = getattr(criterion, field)
            if _placeholder(text):
                hits.append(context.hit("error", criterion.id, field, "placeholder", quote=_quote(text)))
            elif _normal(text) in seen:
                other = seen[_normal(text)]
                hits.append(context.hit("error", criterion.id, field, "repeats", other=other, quote=_quote(text)))
            else:
                seen[_normal(text)] = field
    return hits


def compound_criterion(context: Context) -> list[Hit]:
    """A criterion's `then` joining two outcomes with and/or (和, 或, 以及, 并且).

    Trips: "the order is saved and an email is sent". Does not: "the command is rejected"."""
    hits = []
    for criterion in context.criteria:
        joiners = [m.group().lower() for m in _JOINERS.finditer(criterion.then)]
        if joiners:
            quote = _quote(criterion.then)
            hits.append(context.hit("info", criterion.id, "then", "compound", joiners=_named(joiners), quote=quote))
    return hits


def story_form(context: Context) -> list[Hit]:
    """A story that names no role and goal.

    Trips: "Search recipes". Does not: "As a cook, I want to search recipes" / "作为厨师，我希望搜索菜谱"."""
    return [
        context.hit("warning", story.id, "story", "story-form", quote=_quote(story.story))
        for story in context.stories
        if not _STORY_FORM.match(story.story)
    ]


def untested_criterion(context: Context) -> list[Hit]:
    """A criterion no test case covers: an error for a must story, a warning for should, info for could.

    Trips: AC-1.1 of a must story that no test case lists in `covers`. Does not: a criterion TC-1 covers."""
    priorities = {story.id: story.priority for story in context.stories}
    owners = {criterion.id: criterion.story_id for criterion in context.criteria}
    hits = []
    for criterion_id in context.traceability.uncovered:
        severity = _SEVERITY_BY_PRIORITY.get(priorities.get(owners.get(criterion_id, ""), "must"))
        if severity:  # `wont` stories are out of scope
            hits.append(context.hit(severity, criterion_id, "covers", "untested"))
    return hits


def _referring_field(documents: Documents, source: str) -> str:
    """The field a dangling reference sits in, from the kind of document its source is."""
    plan, design = documents.test_plan, documents.design
    if re.fullmatch(r"TC-\d+", source) or (plan and source in plan.identifiers()):
        return "covers"
    endpoints = {f"{endpoint.method} {endpoint.path}" for endpoint in (design.api if design else [])}
    if re.fullmatch(r"C-\d+", source) or source in endpoints:
        return "serves"
    if design and source in {milestone.name for milestone in design.milestones}:
        return "scope"
    return "ids"


def dangling_reference(context: Context) -> list[Hit]:
    """An identifier that is referenced but defined nowhere.

    Trips: TC-9 covers AC-7.1, which the analysis does not define. Does not: TC-1 covers AC-1.1, defined."""
    return [
        context.hit("error", source, _referring_field(context.documents, source), "dangling", missing=missing)
        for source, missing in ((item["from"], item["to"]) for item in context.traceability.dangling)
    ]


def story_without_component(context: Context) -> list[Hit]:
    """A must or should story that no component or API endpoint serves.

    Trips: must story US-2 in no `serves`. Does not: a could story, or one that C-1 serves."""
    priorities = {story.id: story.priority for story in context.stories}
    return [
        context.hit("warning", story_id, "serves", "unserved")
        for story_id in context.traceability.stories_without_component
        if priorities.get(story_id) in ("must", "should")
    ]


def case_without_expected(context: Context) -> list[Hit]:
    """A test case whose steps are all placeholders, or whose expected result is one.

    Trips: expected "TBD"; steps ["...", "TODO"]. Does not: steps ["Open the cart"], expected "3 items are listed"."""
    hits = []
    for case in context.documents.test_plan.test_cases if context.documents.test_plan else []:
        if all(_placeholder(step) for step in case.steps):
            hits.append(context.hit("error", case.id, "steps", "no-steps", quote=_quote("; ".join(case.steps))))
        if _placeholder(case.expected):
            hits.append(context.hit("error", case.id, "expected", "no-expected", quote=_quote(case.expected)))
    return hits


def duplicate(context: Context) -> list[Hit]:
    """Two stories with the same text, or two criteria with the same given, when and then (case, blanks and
    trailing punctuation aside); the later one is reported.

    Trips: US-1 and US-3 both "As a user, I want to log in". Does not: "... log in" and "... log out"."""
    items = [(story.id, "story", (_normal(story.story),), story.story) for story in context.stories]
    items += [
        (c.id, "given/when/then", tuple(map(_normal, (c.given, c.when, c.then))), c.then) for c in context.criteria
    ]
    first: dict[tuple[str, ...], str] = {}
    hits = []
    for target, field, key, text in items:
        earlier = first.setdefault((field, *key), target)
        if earlier != target:
            hits.append(context.hit("warning", target, field, "duplicate", other=earlier, quote=_quote(text)))
    return hits


RULES: tuple[Rule, ...] = (
    Rule("vague-term", "ISO/IEC/IEEE 29148: unambiguous, verifiable; INCOSE GtWR R7, R9", vague_term),
    Rule("unmeasurable-nfr", "ISO/IEC/IEEE 29148: verifiable; INCOSE GtWR R34", unmeasurable_nfr),
    Rule("incomplete-criterion", "ISO/IEC/IEEE 29148: complete; Given/When/Then", incomplete_criterion),
    Rule("compound-criterion", "ISO/IEC/IEEE 29148: singular; INCOSE GtWR R18, R19", compound_criterion),
    Rule("story-form", "INVEST: valuable; the role-goal-benefit story template", story_form),
    Rule("untested-criterion", "ISO/IEC/IEEE 29148: verifiable, traceable; INVEST: testable", untested_criterion),
    Rule("dangling-reference", "ISO/IEC/IEEE 29148: traceable; consistent set", dangling_reference),
    Rule("story-without-component", "ISO/IEC/IEEE 29148: traceable (to the design)", story_without_component),
    Rule("test-without-expected", "ISO/IEC/IEEE 29119-3: test case (steps, expected results)", case_without_expected),
    Rule("duplicate", "ISO/IEC/IEEE 29148: consistent set; INCOSE GtWR R30", duplicate),
)


def find(documents: Documents, traceability: Traceability, chinese: bool = False) -> list[Finding]:
    """Every rule's findings, rules in RULES order, each rule's findings in document order; ids Q-1.. assigned last."""
    context = Context(documents, traceability, chinese)
    hits = [(rule.name, hit) for rule in RULES for hit in rule.check(context)]
    return [Finding(id=f"Q-{n}", rule=name, **hit._asdict()) for n, (name, hit) in enumerate(hits, start=1)]
