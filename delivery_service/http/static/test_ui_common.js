// What the test UI's modules share: the page's elements, the API (with the tab's key), the task being
// watched and the markdown renderer. Text from the API is only ever inserted with textContent; HTML comes
// from markdown renderers configured alike, raw HTML escaped and unsafe links refused: the server's for
// finished deliverables (delivery_service/http/markdown.py) and markdown-it (vendored in static/vendor,
// loaded before the modules as `window.markdownit`) for everything rendered in the page.

// The pipeline as the service describes it (GET /api/agents, no key needed): the agents in the order they
// run ({name, title, title_zh, step, phase, reviews}), and the status each terminal event ends a task in.
const pipeline = await fetch("/api/agents").then((response) => response.json());
export const AGENTS = pipeline.agents;
export const ENDING_STATUS = Object.fromEntries(
  pipeline.event_types.filter((type) => type.terminal).map((type) => [type.event_type, type.status]),
);
export const $ = (id) => document.getElementById(id);
export const markdown = window.markdownit({ html: false, linkify: false });

// The task on screen: its stream, the events received, and each agent's live text.
export const run = { taskId: null, source: null, lastSequence: 0, events: [], ended: false, chinese: false, live: {} };

let apiKey = sessionStorage.getItem("apiKey");

export function useApiKey(key) {
  apiKey = key;
  sessionStorage.setItem("apiKey", key);
}

export function streamTokenOf(taskId) {
  return sessionStorage.getItem(`streamToken:${taskId}`);
}

export function rememberStreamToken(taskId, token) {
  if (token) sessionStorage.setItem(`streamToken:${taskId}`, token);
}

// Open a task on the page (test_ui.js follows its stream): from the recent tasks, a revision, a follow-up.
export function openTask(taskId, streamToken) {
  window.dispatchEvent(new CustomEvent("open-task", { detail: { taskId, streamToken } }));
}

export function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function describeError(response, body) {
  const detail = body && body.detail;
  const text = Array.isArray(detail) ? detail.map((e) => e.msg).join(" ") : detail || `HTTP ${response.status}`;
  if (response.status === 429) {
    return `${text} (try again in ${response.headers.get("Retry-After") || "a few"} seconds)`;
  }
  if (response.status === 404) return `Not found: ${text}`;
  return text;
}

export async function api(path, options = {}) {
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
