// The test UI: start a task, watch the four agents live, steer the run, take the deliverables away. This
// module follows a task's stream and hands each event to the panel it concerns (one module per panel,
// test_ui_*.js; what they share is in test_ui_common.js). Each task has an address, /test-ui#task=<id>,
// that reopens and resumes it.
import { $, ENDING_STATUS, api, rememberStreamToken, run, streamTokenOf, useApiKey } from "./test_ui_common.js";
import { showDeliverables } from "./test_ui_deliverables.js";
import { clearLog, logEvent } from "./test_ui_log.js";
import { hideQuality, showGateStatus } from "./test_ui_quality.js";
import { loadRecent } from "./test_ui_recent.js";
import {
  addThought, appendLiveText, failWorkingStages, hideConfirmation, resetPanels, setStage, showConfirmation, showLiveText,
} from "./test_ui_run.js";
import { hideWebhooks, showWebhooks } from "./test_ui_webhooks.js";

function resetRun(taskId) {
  if (run.source) run.source.close();
  Object.assign(run, { taskId, source: null, lastSequence: 0, events: [], ended: false, chinese: false, live: {} });
  $("run-section").hidden = false;
  $("deliverables-section").hidden = true;
  $("thread-section").hidden = true;
  $("changes").hidden = true;
  hideWebhooks();
  hideQuality();
  $("task-id").textContent = taskId;
  $("task-status").textContent = "-";
  $("terminal-message").textContent = "";
  $("gap-warning").hidden = true;
  $("cancel").hidden = false;
  $("progress-bar").style.width = "0";
  clearLog();
  resetPanels();
}

function showEvent(event) {
  logEvent(event);
  const agent = event.agent_name;
  switch (event.event_type) {
    case "start":
      run.chinese = event.metadata.language === "zh";
      $("task-status").textContent = "running";
      loadRecent();
      break;
    case "agent_start":
      setStage(agent, "working");
      $("task-status").textContent = "running";
      showLiveText(agent, "");
      break;
    case "thought":
      addThought(agent, event.content);
      break;
    case "delta":
      appendLiveText(agent, event.content);
      break;
    case "output":
      showLiveText(agent, event.content);
      if (event.metadata.carried_over) setStage(agent, "carried over");
      break;
    case "step_end":
      if (!event.metadata.carried_over) setStage(agent, "done");
      $("progress-bar").style.width = `${(event.metadata.step / event.metadata.total_steps) * 100}%`;
      showWebhooks(); // a step may have sent a webhook message
      break;
    case "action":
      if (agent === "System" && event.metadata.kind === "queued") {
        $("task-status").textContent = `queued (position ${event.metadata.queue_position})`;
      }
      if (agent === "System" && event.metadata.kind === "resumed") hideConfirmation();
      if (agent === "System" && event.metadata.kind === "quality") {
        showGateStatus(event.metadata.gate.status, "over the analysis, test plan and design, before the review");
      }
      break;
    case "confirmation_required":
      $("task-status").textContent = "awaiting confirmation";
      showConfirmation(event);
      loadRecent();
      showWebhooks();
      break;
    default:
      break;
  }
  if (event.event_type in ENDING_STATUS) finish(event);
}

function finish(event) {
  run.ended = true;
  if (run.source) run.source.close();
  $("connection").textContent = "closed";
  $("cancel").hidden = true;
  hideConfirmation();
  $("task-status").textContent = ENDING_STATUS[event.event_type];
  $("terminal-message").textContent = event.content;
  $("terminal-message").className = event.event_type === "end" ? "" : "error";
  if (event.event_type === "end") $("progress-bar").style.width = "100%";
  else failWorkingStages();
  if (event.metadata?.gate) showGateStatus(event.metadata.gate.status);
  showDeliverables(run.taskId);
  showWebhooks();
  loadRecent();
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
$("auth-form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  useApiKey($("api-key").value.trim());
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
window.addEventListener("open-task", (open) => follow(open.detail.taskId, open.detail.streamToken || streamTokenOf(open.detail.taskId)));
window.addEventListener("hashchange", openTaskFromAddress);
// The task on screen changed without an event (a waived gate): its result, webhook messages and list entry.
window.addEventListener("task-updated", (update) => {
  if (update.detail.taskId !== run.taskId) return;
  showDeliverables(run.taskId);
  showWebhooks();
  loadRecent();
});

api("/healthz").then((health) => {
  maxChars = health.max_requirement_chars;
  updateCounter();
  const model = health.model;
  $("model-note").textContent = `Model: ${model.provider} / ${model.model}${model.note ? ` - ${model.note}` : ""}`;
});
loadRecent();
openTaskFromAddress();
