// A structured deliverable while the model writes it: its JSON so far (read by jsonrepair, vendored from
// npm), rendered as the markdown of the document it will be. The renderers are those of
// delivery_service/deliverables/render.py, line for line (tests/test_ui.py checks that they give the
// server's markdown for every finished deliverable): a missing field reads as empty, a section appears
// once its field has begun. The command line does the same with the Python renderer itself.
import { jsonrepair } from "./vendor/jsonrepair/regular/jsonrepair.js";

const WORDS = {
  en: {
    analysis: "Requirements analysis", stories: "User stories", criteria: "Acceptance criteria",
    nfr: "Non-functional requirements", questions: "Open questions", target: "target",
    plan: "Test plan", cases: "Test cases", design: "Technical design", components: "Components",
    data_model: "Data model", api: "API", diagram: "Diagram", risks: "Risks",
    milestones: "Milestones", review: "Delivery review", decision: "Decision", issues: "Issues",
    summary: "Summary", serves: "serves", fix: "fix", go: "Go", no_go: "No-go",
    given: "Given", when: "when", then: "then",
    case_columns: ["ID", "Title", "Type", "Covers", "Steps", "Expected"],
    api_columns: ["Method", "Path", "Purpose", "Serves"],
    priorities: { must: "Must", should: "Should", could: "Could", wont: "Won't" },
  },
  zh: {
    analysis: "需求分析", stories: "用户故事", criteria: "验收标准", nfr: "非功能需求",
    questions: "待确认问题", target: "目标", plan: "测试计划", cases: "测试用例",
    design: "技术设计", components: "组件", data_model: "数据模型", api: "接口", diagram: "架构图",
    risks: "风险", milestones: "里程碑", review: "交付评审", decision: "结论", issues: "问题",
    summary: "总结", serves: "服务于", fix: "修正", go: "通过", no_go: "不通过", given: "假如", when: "当", then: "那么",
    case_columns: ["编号", "标题", "类型", "覆盖", "步骤", "预期结果"],
    api_columns: ["方法", "路径", "用途", "服务于"],
    priorities: { must: "必须", should: "应该", could: "可以", wont: "暂不" },
  },
};
const TRIAGE_FIELDS = ["classification", "rerun_from", "reason"];
const FENCE_START = /```(?:json|JSON)?[ \t]*\n/;

const own = (item, key) => Object.prototype.hasOwnProperty.call(item, key);
const text = (item, key) => (["string", "number"].includes(typeof item[key]) ? String(item[key]) : "");
const items = (item, key) => (Array.isArray(item[key]) ? item[key].filter((e) => e && typeof e === "object" && !Array.isArray(e)) : []);
const texts = (item, key) => (Array.isArray(item[key]) ? item[key].filter((e) => ["string", "number"].includes(typeof e)).map(String) : []);
const cell = (value) => value.replaceAll("|", "\\|").replaceAll("\n", " ");

function table(columns, rows) {
  return [`| ${columns.join(" | ")} |`, `|${"---|".repeat(columns.length)}`, ...rows.map((row) => `| ${row.map(cell).join(" | ")} |`)];
}

function analysis(data, words) {
  const lines = [`# ${words.analysis}`, "", `## ${words.stories}`, ""];
  for (const s of items(data, "user_stories")) {
    lines.push(`- **${text(s, "id")} (${words.priorities[text(s, "priority")] || ""}):** ${text(s, "story")}`);
  }
  if (own(data, "acceptance_criteria")) lines.push("", `## ${words.criteria}`, "");
  for (const c of items(data, "acceptance_criteria")) {
    lines.push(`- **${text(c, "id")}** (${text(c, "story_id")}): ${words.given} ${text(c, "given")}, ${words.when} ${text(c, "when")}, ${words.then} ${text(c, "then")}`);
  }
  if (items(data, "non_functional").length) {
    lines.push("", `## ${words.nfr}`, "");
    for (const n of items(data, "non_functional")) lines.push(`- **${text(n, "id")}:** ${text(n, "requirement")} (${words.target}: ${text(n, "target")})`);
  }
  if (texts(data, "open_questions").length) {
    lines.push("", `## ${words.questions}`, "", ...texts(data, "open_questions").map((q) => `- ${q}`));
  }
  return lines;
}

function plan(data, words) {
  const rows = items(data, "test_cases").map((c) => [
    text(c, "id"), text(c, "title"), text(c, "type"), texts(c, "covers").join(", "), texts(c, "steps").join("; "), text(c, "expected"),
  ]);
  return [`# ${words.plan}`, "", `## ${words.cases}`, "", ...table(words.case_columns, rows)];
}

function design(data, words) {
  const lines = [`# ${words.design}`, "", `## ${words.components}`, ""];
  for (const c of items(data, "components")) {
    const serves = texts(c, "serves").length ? ` (${words.serves} ${texts(c, "serves").join(", ")})` : "";
    lines.push(`- **${text(c, "id")} ${text(c, "name")}:** ${text(c, "responsibility")}${serves}`);
  }
  if (items(data, "data_model").length) {
    lines.push("", `## ${words.data_model}`, "", ...items(data, "data_model").map((e) => `- **${text(e, "entity")}:** ${texts(e, "fields").join(", ")}`));
  }
  if (items(data, "api").length) {
    const rows = items(data, "api").map((e) => [text(e, "method"), `\`${text(e, "path")}\``, text(e, "purpose"), texts(e, "serves").join(", ")]);
    lines.push("", `## ${words.api}`, "", ...table(words.api_columns, rows));
  }
  if (text(data, "diagram")) lines.push("", `## ${words.diagram}`, "", "```mermaid", text(data, "diagram"), "```");
  if (items(data, "risks").length) {
    lines.push("", `## ${words.risks}`, "", ...items(data, "risks").map((r) => `- **${text(r, "id")}:** ${text(r, "risk")} (${words.fix}: ${text(r, "mitigation")})`));
  }
  if (items(data, "milestones").length) {
    lines.push("", `## ${words.milestones}`, "", ...items(data, "milestones").map((m) => `- **${text(m, "name")}:** ${texts(m, "scope").join(", ")}`));
  }
  return lines;
}

function review(data, words) {
  const lines = [`# ${words.review}`, ""];
  if (own(data, "decision")) lines.push(`## ${words.decision}: ${words[text(data, "decision")] || ""}`, "");
  lines.push(...texts(data, "reasons").map((reason) => `- ${reason}`));
  if (items(data, "issues").length) {
    lines.push("", `## ${words.issues}`, "");
    for (const issue of items(data, "issues")) {
      const ids = texts(issue, "ids").length ? `${texts(issue, "ids").join(", ")}: ` : "";
      lines.push(`- ${ids}${text(issue, "problem")} (${words.fix}: ${text(issue, "fix")})`);
    }
  }
  if (own(data, "summary")) lines.push("", `## ${words.summary}`, "", text(data, "summary"));
  return lines;
}

const triage = (data) => [`${text(data, "classification")}: re-run from ${text(data, "rerun_from")}. ${text(data, "reason")}`];

const RENDERERS = { ProductManager: analysis, QAEngineer: plan, SoftwareDeveloper: design, Coordinator: review };

// The markdown of as much of `agent`'s deliverable as `data` holds (render.py's render_partial).
export function renderDocument(agent, data, chinese) {
  const renderer = TRIAGE_FIELDS.some((key) => own(data, key)) ? triage : RENDERERS[agent];
  return `${renderer(data, WORDS[chinese ? "zh" : "en"]).join("\n").trim()}\n`;
}

// An agent's answer as it is being written (render.py's live_markdown): the deliverable's JSON so far as
// its document, after any text before it; the text as it is when it holds no JSON yet, or none that parses.
export function liveMarkdown(agent, written, chinese) {
  if (!RENDERERS[agent]) return written;
  const fence = FENCE_START.exec(written);
  const start = fence ? fence.index + fence[0].length : written.indexOf("{");
  if (start < 0) return written;
  const before = written.slice(0, fence ? fence.index : start).trim();
  const json = fence ? written.slice(start).split("```")[0] : written.slice(start);
  let data;
  try {
    data = JSON.parse(jsonrepair(json));
  } catch {
    return written;
  }
  if (!data || typeof data !== "object" || Array.isArray(data)) return written;
  const document = renderDocument(agent, withoutNulls(data), chinese);
  return before ? `${before}\n\n${document}` : document;
}

// jsonrepair reads a key cut short as a key with the value null: read it, like a null, as not written yet.
function withoutNulls(value) {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (!value || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, withoutNulls(v)]));
}
