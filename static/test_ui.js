// First working test page: starts a task and shows its events as text (never as HTML).
"use strict";

const log = document.getElementById("log");
const state = document.getElementById("state");
const message = document.getElementById("message");
let source = null;

function show(event) {
  const line = document.createElement("div");
  line.className = "event" + (event.event_type === "error" ? " error" : "");
  line.textContent = `#${event.sequence} ${event.timestamp} ${event.agent_name} ${event.event_type}: ${event.content}`;
  log.appendChild(line);
  log.scrollTop = log.scrollHeight;
}

function describeError(status, body) {
  if (Array.isArray(body.detail)) return body.detail.map((e) => e.msg).join(" ");
  return body.detail || `HTTP ${status}`;
}

function follow(taskId) {
  if (source) source.close();
  log.textContent = "";
  document.getElementById("task-id").textContent = taskId;
  source = new EventSource(`/api/stream/${encodeURIComponent(taskId)}`);
  state.textContent = "connecting";
  source.onopen = () => { state.textContent = "connected"; };
  source.onmessage = (msg) => {
    const event = JSON.parse(msg.data);
    show(event);
    if (["end", "error", "cancelled"].includes(event.event_type)) {
      source.close();
      state.textContent = "closed";
    }
  };
  source.onerror = () => { if (state.textContent !== "closed") state.textContent = "reconnecting"; };
}

document.getElementById("task-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  message.textContent = "";
  const response = await fetch("/api/run_task", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      user_requirement: document.getElementById("requirement").value,
      skip_confirmation: true,
      stream_tokens: document.getElementById("stream-tokens").checked,
    }),
  });
  const body = await response.json();
  if (!response.ok) {
    message.textContent = describeError(response.status, body);
    return;
  }
  follow(body.task_id);
});

fetch("/healthz").then((r) => r.json()).then((health) => {
  const model = health.model;
  document.getElementById("model-note").textContent =
    `Model: ${model.provider} / ${model.model}` + (model.note ? ` (${model.note})` : "");
});
