// The test UI: start a task, watch the four agents live, steer the run, take the deliverables away.
// Text from the API is only ever inserted with textContent. HTML comes from two markdown renderers
// configured alike, raw HTML escaped and unsafe links refused: the server's for the finished
// deliverables (delivery_service/http/markdown.py) and markdown-it (vendored in static/vendor) for the
// agents' live text. Each task has an address, /test-ui#task=<id>, that reopens and resumes it.
"use strict";

const AGENTS = [
  ["ProductManager", "Requirements analysis"],
  ["QAEngineer", "Test plan"],
  ["SoftwareDeveloper", "Technical design"],
  ["Coordinator", "Delivery review"],
];
const TERMINAL = ["end", "error", "cancelled"];
const RECENT_REFRESH_MS = 3000;
const $ = (id) => document.getElementById(id);
const markdown = window.markdownit({ html: false, linkify: false });

let apiKey = sessionStorage.getItem("apiKey");
let recentTimer = null;

function streamTokenOf(taskId) {
  return sessionStorage.getItem(`streamToken:${taskId}`);
}

function rememberStreamToken(taskId, token) {
  if (token) sessionStorage.setItem(`streamToken:${taskId}`, token);
}

const run = {
  taskId: null,
  source: null,
  lastSequence: 0,
  events: [],
  ended: false,
  liveText: {},
};

// --- API ---------------------------------------------------------------------------------------
function describeError(response, body) {
  const detail = body && body.detail;
  const text = Array.isArray(detail) ? detail.map((e) => e.msg).join(" ") : detail || `HTTP ${response.status}`;
  if (response.status === 429) {
    return `${text} (try again in ${response.headers.get("Retry-After") || "a few"} seconds)`;
  }
  if (response.status === 404) return `Not found: ${text}`;
  return text;
}

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => null);
  if (response.status === 401) {
    $("auth").hidden = false;
    throw new Error("This service needs an API key: enter it above, then try again.");
  }
  if (!response.ok) throw new Error(describeError(response, body));
  return body;
}

// --- rendering ---------------------------------------------------------------------------------
function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function resetRun(taskId) {
  if (run.source) run.source.close();
  Object.assign(run, { taskId, source: null, lastSequence: 0, events: [], ended: false, liveText: {} });
  $("run-section").hidden = false;
  $("deliverables-section").hidden = true;
  $("thread-section").hidden = true;
  $("changes").hidden = true;
  hideWebhooks();
  $("task-id").textContent = taskId;
  $("task-status").textContent = "-";
  $("terminal-message").textContent = "";
  $("gap-warning").hidden = true;
  $("confirmation").hidden = true;
  $("cancel").hidden = false;
  $("progress-bar").style.width = "0";
  $("log").tBodies[0].textContent = "";
  $("pipeline").textContent = "";
  $("panels").textContent = "";
  for (const [name, title] of AGENTS) {
    const stage = element("li");
    stage.dataset.agent = name;
    stage.dataset.state = "waiting";
    stage.append(element("strong", name), element("span", `${title}: waiting`, "state"));
    $("pipeline").append(stage);
    const panel = element("div", undefined, "panel");
    panel.dataset.agent = name;
    panel.append(element("h3", name), element("div", undefined, "thoughts"), element("div", "", "live"));
    $("panels").append(panel);
  }
}

// An agent's live text as markdown: the whole text is rendered again, at most once per frame.
function showLiveText(agent, text) {
  run.liveText[agent] = text;
  const live = panel(agent).querySelector(".live");
  if (live.dataset.pending) return;
  live.dataset.pending = "1";
  requestAnimationFrame(() => {
    delete live.dataset.pending;
    live.innerHTML = markdown.render(run.liveText[agent] || ""); // raw HTML escaped, unsafe links refused
  });
}

function setStage(agent, state) {
  const stage = document.querySelector(`#pipeline li[data-agent="${agent}"]`);
  if (!stage) return;
  stage.dataset.state = state;
  const title = AGENTS.find(([name]) => name === agent)[1];
  stage.querySelector(".state").textContent = `${title}: ${state}`;
}

function panel(agent) {
  return document.querySelector(`#panels .panel[data-agent="${agent}"]`);
}

function logEvent(event) {
  const row = element("tr");
  row.dataset.agent = event.agent_name;
  row.dataset.type = event.event_type;
  const time = event.timestamp.slice(11, 23);
  for (const value of [event.sequence, time, event.agent_name, event.event_type, event.content]) {
    row.append(element("td", String(value)));
  }
  $("log").tBodies[0].append(row);
  addFilterOption("filter-agent", event.agent_name);
  addFilterOption("filter-type", event.event_type);
  applyFilter(row);
}

function addFilterOption(selectId, value) {
  const select = $(selectId);
  if (![...select.options].some((option) => option.value === value)) select.append(new Option(value, value));
}

function applyFilter(row) {
  const agent = $("filter-agent").value;
  const type = $("filter-type").value;
  row.hidden = Boolean((agent && row.dataset.agent !== agent) || (type && row.dataset.type !== type));
}

function showEvent(event) {
  logEvent(event);
  const agent = event.agent_name;
  switch (event.event_type) {
    case "start":
      $("task-status").textContent = "running";
      loadRecent();
      break;
    case "agent_start":
      setStage(agent, "working");
      $("task-status").textContent = "running";
      showLiveText(agent, "");
      break;
    case "thought":
      panel(agent).querySelector(".thoughts").append(element("p", event.content, "thought"));
      break;
    case "delta":
      showLiveText(agent, (run.liveText[agent] || "") + event.content);
      break;
    case "output":
      showLiveText(agent, event.content);
      if (event.metadata.carried_over) setStage(agent, "carried over");
      break;
    case "step_end":
      if (!event.metadata.carried_over) setStage(agent, "done");
      $("progress-bar").style.width = `${(event.metadata.step / 4) * 100}%`;
      showWebhooks(); // a step may have sent a webhook message
      break;
    case "action":
      if (agent === "System" && event.metadata.kind === "queued") {
        $("task-status").textContent = `queued (position ${event.metadata.queue_position})`;
      }
      if (agent === "System" && event.metadata.kind === "resumed") $("confirmation").hidden = true;
      break;
    case "confirmation_required":
      $("task-status").textContent = "awaiting confirmation";
      $("confirmation-question").textContent = event.content;
      $("feedback").value = "";
      $("confirmation").hidden = false;
      loadRecent();
      showWebhooks();
      break;
    default:
      break;
  }
  if (TERMINAL.includes(event.event_type)) finish(event);
}

function finish(event) {
  run.ended = true;
  if (run.source) run.source.close();
  $("connection").textContent = "closed";
  $("cancel").hidden = true;
  $("confirmation").hidden = true;
  const status = { end: "completed", error: "failed", cancelled: "cancelled" }[event.event_type];
  $("task-status").textContent = status;
  $("terminal-message").textContent = event.content;
  $("terminal-message").className = event.event_type === "end" ? "" : "error";
  if (event.event_type === "end") $("progress-bar").style.width = "100%";
  if (event.event_type !== "end") {
    for (const [name] of AGENTS) {
      const stage = document.querySelector(`#pipeline li[data-agent="${name}"]`);
      if (stage.dataset.state === "working") setStage(name, "failed");
    }
  }
  showDeliverables(run.taskId);
  showWebhooks();
  loadRecent();
}

// --- structured deliverables ----------------------------------------------------------------------
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

// The traceability matrix: each acceptance criterion, its story and the test cases covering it.
function showTraceability(result) {
  const section = $("traceability");
  section.textContent = "";
  const analysis = result.deliverables.find((d) => d.agent_name === "ProductManager");
  const plan = result.deliverables.find((d) => d.agent_name === "QAEngineer");
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

// The design's mermaid diagram, drawn in a sandboxed frame (static/diagram.html): model output never
// runs as this page, which holds the API key.
function showDiagram(container, deliverables) {
  const design = deliverables.find((d) => d.agent_name === "SoftwareDeveloper");
  const source = design && design.data && design.data.diagram;
  if (!source) return;
  const frame = element("iframe", undefined, "diagram");
  frame.title = "Architecture diagram";
  frame.setAttribute("sandbox", "allow-scripts");
  frame.src = "/static/diagram.html";
  frame.addEventListener("load", () => frame.contentWindow.postMessage({ source }, "*"));
  const article = container.querySelector('article[data-agent="SoftwareDeveloper"]');
  article.insertBefore(frame, article.children[1] || null);
}

window.addEventListener("message", (message) => {
  const frame = document.querySelector("iframe.diagram");
  if (frame && message.source === frame.contentWindow && Number.isFinite(message.data?.diagramHeight)) {
    frame.style.height = `${Math.min(message.data.diagramHeight + 16, 800)}px`;
    frame.dataset.state = message.data.state;
  }
});

async function showDeliverables(taskId) {
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
    showTraceability(result);
    showDiagram(container, result.deliverables);
    $("download").href = `/api/task/${encodeURIComponent(taskId)}/result?format=markdown`;
    $("deliverables-section").hidden = false;
    await showThread(result);
  } catch (error) {
    $("terminal-message").textContent += `\nThe deliverables could not be loaded: ${error.message}`;
  }
}

// --- follow-ups ----------------------------------------------------------------------------------
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

// The thread's revisions, oldest first, each one opening its task; the follow-up box under a completed task.
async function showThread(result) {
  const thread = await api(`/api/threads/${encodeURIComponent(result.thread_id)}`);
  if (result.task_id !== run.taskId) return;
  const timeline = $("timeline");
  timeline.textContent = "";
  for (const task of thread.tasks) {
    const item = element("li");
    item.dataset.revision = String(task.revision);
    item.dataset.taskId = task.task_id;
    if (task.task_id === result.task_id) item.className = "current";
    const open = element("button", `Revision ${task.revision}`);
    open.type = "button";
    open.addEventListener("click", () => follow(task.task_id));
    const parent = task.parent_task_id ? ` (revises revision ${revisionOf(thread, task.parent_task_id)})` : "";
    item.append(open, element("span", ` ${task.status}${parent}: `, "muted"), element("span", task.request.slice(0, 200)));
    timeline.append(item);
  }
  $("follow-up-form").hidden = result.status !== "completed";
  $("thread-section").hidden = false;
}

function revisionOf(thread, taskId) {
  const task = thread.tasks.find((candidate) => candidate.task_id === taskId);
  return task ? task.revision : "?";
}

async function submitFollowUp(submit) {
  submit.preventDefault();
  $("follow-up-error").textContent = "";
  $("follow-up-submit").disabled = true;
  try {
    const task = await api(`/api/task/${encodeURIComponent(run.taskId)}/follow_up`, {
      method: "POST",
      body: JSON.stringify({ request: $("follow-up").value, skip_confirmation: !$("follow-up-confirm").checked }),
    });
    $("follow-up").value = "";
    follow(task.task_id, task.stream_token);
  } catch (error) {
    $("follow-up-error").textContent = error.message;
  } finally {
    $("follow-up-submit").disabled = false;
  }
}

// --- the stream ----------------------------------------------------------------------------------
function follow(taskId, streamToken = streamTokenOf(taskId)) {
  resetRun(taskId);
  rememberStreamToken(taskId, streamToken);
  if (location.hash !== `#task=${taskId}`) history.pushState(null, "", `#task=${encodeURIComponent(taskId)}`);
  // EventSource reconnects by itself after a drop and sends Last-Event-ID, so the stream resumes
  // after the last event received; the checks below make a duplicate or a gap impossible to miss.
  const query = streamToken ? `?token=${encodeURIComponent(streamToken)}` : "";
  const source = new EventSource(`/api/stream/${encodeURIComponent(taskId)}${query}`);
  run.source = source;
  $("connection").textContent = "connecting";
  source.onopen = () => {
    $("connection").textContent = "connected";
  };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.sequence <= run.lastSequence) return; // already shown
    if (event.sequence !== run.lastSequence + 1) {
      $("gap-warning").textContent = `Events ${run.lastSequence + 1} to ${event.sequence - 1} were not received.`;
      $("gap-warning").hidden = false;
    }
    run.lastSequence = event.sequence;
    run.events.push(event);
    showEvent(event);
  };
  source.onerror = () => {
    if (run.ended) return;
    if (source.readyState === EventSource.CLOSED) {
      $("connection").textContent = "closed";
      checkTask(taskId);
    } else {
      $("connection").textContent = "reconnecting";
    }
  };
  loadRecent();
}

async function checkTask(taskId) {
  try {
    const status = await api(`/api/task/${encodeURIComponent(taskId)}/status`);
    $("task-status").textContent = status.status;
  } catch (error) {
    $("terminal-message").textContent = error.message;
    $("terminal-message").className = "error";
  }
}

// --- actions -------------------------------------------------------------------------------------
async function submitTask(submit) {
  submit.preventDefault();
  $("form-error").textContent = "";
  $("submit").disabled = true;
  try {
    const task = await api("/api/run_task", {
      method: "POST",
      body: JSON.stringify({
        user_requirement: $("requirement").value,
        skip_confirmation: !$("confirm").checked,
        stream_tokens: $("stream-tokens").checked,
      }),
    });
    follow(task.task_id, task.stream_token);
  } catch (error) {
    $("form-error").textContent = error.message;
  } finally {
    $("submit").disabled = false;
  }
}

async function control(path, body) {
  try {
    await api(`/api/task/${encodeURIComponent(run.taskId)}/${path}`, { method: "POST", body: JSON.stringify(body || {}) });
  } catch (error) {
    $("terminal-message").textContent = error.message;
    $("terminal-message").className = "error";
  }
}

// The recent tasks, refreshed every RECENT_REFRESH_MS while the tab is visible (new tasks appear,
// statuses stay current), and at once when the watched task changes state.
async function loadRecent() {
  clearTimeout(recentTimer);
  try {
    const page = await api("/api/tasks?limit=10");
    const list = $("recent");
    list.textContent = "";
    for (const task of page.tasks) {
      rememberStreamToken(task.task_id, task.stream_token);
      const item = element("li");
      const open = element("button", `${task.requirement.slice(0, 80)}`);
      open.type = "button";
      open.addEventListener("click", () => follow(task.task_id, task.stream_token));
      item.append(open, element("span", ` ${task.status} · ${task.created_at.slice(0, 19).replace("T", " ")}`, "muted"));
      list.append(item);
    }
  } catch (error) {
    $("recent").textContent = error.message;
  }
  if (document.visibilityState === "visible") recentTimer = setTimeout(loadRecent, RECENT_REFRESH_MS);
}

// /test-ui#task=<id> opens that task: its events replay from the start, then continue live.
function openTaskFromAddress() {
  const match = /^#task=([^&]+)$/.exec(location.hash);
  const taskId = match && decodeURIComponent(match[1]);
  if (taskId && taskId !== run.taskId) follow(taskId);
}

// --- wiring --------------------------------------------------------------------------------------
let maxChars = 20000;

function updateCounter() {
  const length = $("requirement").value.trim().length;
  $("counter").textContent = `${length} / ${maxChars} characters`;
  $("counter").className = length > maxChars ? "error" : "muted";
}

$("task-form").addEventListener("submit", submitTask);
$("follow-up-form").addEventListener("submit", submitFollowUp);
$("auth-form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  apiKey = $("api-key").value.trim();
  sessionStorage.setItem("apiKey", apiKey);
  $("api-key").value = "";
  $("auth").hidden = true;
  loadRecent();
});
$("requirement").addEventListener("input", updateCounter);
$("cancel").addEventListener("click", () => control("cancel"));
$("approve").addEventListener("click", () => control("confirm", { approved: true }));
$("reject").addEventListener("click", () => {
  if (!$("feedback").value.trim()) {
    $("terminal-message").textContent = "Write what should change before rejecting the analysis.";
    $("terminal-message").className = "error";
    return;
  }
  $("terminal-message").textContent = "";
  control("confirm", { approved: false, feedback: $("feedback").value });
});
$("refresh-tasks").addEventListener("click", loadRecent);
window.addEventListener("hashchange", openTaskFromAddress);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") loadRecent();
});
for (const id of ["filter-agent", "filter-type"]) {
  $(id).addEventListener("change", () => [...$("log").tBodies[0].rows].forEach(applyFilter));
}

api("/healthz").then((health) => {
  maxChars = health.max_requirement_chars;
  updateCounter();
  const model = health.model;
  $("model-note").textContent = `Model: ${model.provider} / ${model.model}${model.note ? ` - ${model.note}` : ""}`;
});
loadRecent();
openTaskFromAddress();
