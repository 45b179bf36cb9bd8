// The deliverables of a finished task: rendered by the server, identifiers linked to where they are
// defined, the traceability matrix, the design's diagram, a follow-up's changes since its parent, and the
// release gate with each quality finding next to its item (test_ui_quality.js).
import { $, api, element, run } from "./test_ui_common.js";
import { showQuality } from "./test_ui_quality.js";
import { showThread } from "./test_ui_thread.js";

const IDENTIFIER = /\b(?:US-\d+|AC-\d+\.\d+|NFR-\d+|TC-\d+|C-\d+|R-\d+)\b/g;

// The identifiers each deliverable's data defines (where a link to them leads).
function definedIds(deliverable) {
  const data = deliverable.data || {};
  const lists = [data.user_stories, data.acceptance_criteria, data.non_functional, data.test_cases, data.components, data.risks];
  return lists.flatMap((items) => (items || []).map((item) => item.id));
}

// Every identifier in the rendered deliverables becomes a link to where it is defined; the definition
// itself carries the anchor. Only text nodes are split: no HTML is parsed here.
function linkIdentifiers(container, deliverables) {
  const definedBy = new Map();
  for (const deliverable of deliverables) {
    for (const id of definedIds(deliverable)) if (!definedBy.has(id)) definedBy.set(id, deliverable.agent_name);
  }
  for (const article of container.querySelectorAll("article")) {
    const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    for (const node of nodes) {
      const text = node.textContent;
      const parts = [];
      let last = 0;
      for (const match of text.matchAll(IDENTIFIER)) {
        if (!definedBy.has(match[0])) continue;
        parts.push(document.createTextNode(text.slice(last, match.index)));
        const link = element("a", match[0], "ref");
        link.href = `#ref-${match[0]}`;
        if (definedBy.get(match[0]) === article.dataset.agent && !document.getElementById(`ref-${match[0]}`)) {
          link.id = `ref-${match[0]}`;
          link.className = "ref definition";
        }
        parts.push(link);
        last = match.index + match[0].length;
      }
      if (parts.length) node.replaceWith(...parts, document.createTextNode(text.slice(last)));
    }
  }
}

// A finished deliverable found by its kind, whichever agent wrote it: the one whose data has `field` (the
// analysis has acceptance criteria, the test plan test cases, the design a diagram).
const holding = (deliverables, field) => deliverables.find((d) => d.data && field in d.data);

// The traceability matrix: each acceptance criterion, its story and the test cases covering it.
function showTraceability(result) {
  const section = $("traceability");
  section.textContent = "";
  const analysis = holding(result.deliverables, "acceptance_criteria");
  const plan = holding(result.deliverables, "test_cases");
  if (!result.traceability || !analysis || !analysis.data) return;
  const tracing = result.traceability;
  section.append(element("h3", `Traceability: ${tracing.covered} of ${tracing.acceptance_criteria} criteria covered · decision: ${result.decision}`));
  const table = element("table");
  const head = element("tr");
  for (const title of ["Criterion", "Story", "Test cases", "Status"]) head.append(element("th", title));
  table.append(head);
  const uncovered = new Set(tracing.uncovered);
  for (const criterion of analysis.data.acceptance_criteria) {
    const covering = ((plan && plan.data && plan.data.test_cases) || []).filter((c) => c.covers.includes(criterion.id));
    const row = element("tr", undefined, uncovered.has(criterion.id) ? "uncovered" : "covered");
    row.append(
      element("td", criterion.id),
      element("td", criterion.story_id),
      element("td", covering.map((c) => c.id).join(", ") || "-"),
      element("td", uncovered.has(criterion.id) ? "not covered" : "covered"),
    );
    table.append(row);
  }
  section.append(table);
  for (const dangling of tracing.dangling) {
    section.append(element("p", `${dangling.from} refers to ${dangling.to}, which nothing defines`, "error"));
  }
}

// The design's mermaid diagram, drawn under its heading in place of its source, in a sandboxed frame
// (static/diagram.html): model output never runs as this page, which holds the API key.
function showDiagram(container, deliverables) {
  const design = holding(deliverables, "diagram");
  const source = design && design.data.diagram;
  if (!source) return;
  const frame = element("iframe", undefined, "diagram");
  frame.title = "Architecture diagram";
  frame.setAttribute("sandbox", "allow-scripts");
  frame.src = "/static/diagram.html";
  frame.addEventListener("load", () => frame.contentWindow.postMessage({ source }, "*"));
  const article = container.querySelector(`article[data-agent="${design.agent_name}"]`);
  const listing = article.querySelector("pre > code.language-mermaid");
  if (listing) listing.parentElement.replaceWith(frame);
  else article.append(frame);
}

window.addEventListener("message", (message) => {
  const frame = document.querySelector("iframe.diagram");
  if (frame && message.source === frame.contentWindow && Number.isFinite(message.data?.diagramHeight)) {
    frame.style.height = `${Math.min(message.data.diagramHeight + 16, 800)}px`;
    frame.dataset.state = message.data.state;
  }
});

export async function showDeliverables(taskId) {
  try {
    const result = await api(`/api/task/${encodeURIComponent(taskId)}/result?format=html`);
    if (taskId !== run.taskId || !result.deliverables.length) return;
    const container = $("deliverables");
    container.textContent = "";
    for (const deliverable of result.deliverables) {
      const article = element("article");
      article.dataset.agent = deliverable.agent_name;
      article.append(element("p", `${deliverable.agent_name}: ${deliverable.title}`, "muted"));
      const body = element("div");
      body.innerHTML = deliverable.html; // rendered by the server with raw HTML escaped
      article.append(body);
      container.append(article);
    }
    linkIdentifiers(container, result.deliverables);
    showChanges(result, container);
    showQuality(result, container);
    showTraceability(result);
    showDiagram(container, result.deliverables);
    $("download").href = `/api/task/${encodeURIComponent(taskId)}/result?format=markdown`;
    $("deliverables-section").hidden = false;
    await showThread(result);
  } catch (error) {
    $("terminal-message").textContent += `\nThe deliverables could not be loaded: ${error.message}`;
  }
}

// A follow-up's changes since its parent (computed by the service): listed, and highlighted where the
// deliverables define them.
function showChanges(result, container) {
  if (!result.changes) return;
  const { added, removed, modified } = result.changes;
  const words = [["added", added], ["modified", modified], ["removed", removed]]
    .map(([kind, ids]) => `${kind}: ${ids.length ? ids.join(", ") : "none"}`);
  $("changes-summary").textContent = words.join("; ");
  for (const [kind, ids] of [["added", added], ["modified", modified]]) {
    for (const id of ids) {
      const definition = container.querySelector(`a.definition[id="ref-${CSS.escape(id)}"]`);
      if (definition) definition.classList.add(`id-${kind}`);
    }
  }
  $("changes").hidden = false;
}
