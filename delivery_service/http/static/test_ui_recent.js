// The recent tasks, newest first, refreshed every RECENT_REFRESH_MS while the tab is visible (new tasks
// appear, statuses stay current), and at once when the watched task changes state. A follow-up shows
// its revision and request, and the requirement of the thread it belongs to; a completed task its release gate.
import { $, api, element, openTask, rememberStreamToken } from "./test_ui_common.js";
import { gateBadge } from "./test_ui_quality.js";

const RECENT_REFRESH_MS = 3000;
let recentTimer = null;

function described(task) {
  const created = task.created_at.slice(0, 19).replace("T", " ");
  if (!task.revision || task.revision === 1) return [task.requirement.slice(0, 80), ` ${task.status} · ${created}`];
  return [
    `Revision ${task.revision}: ${task.request.slice(0, 80)}`,
    ` ${task.status} · ${created} · follows up “${task.requirement.slice(0, 60)}”`,
  ];
}

export async function loadRecent() {
  clearTimeout(recentTimer);
  try {
    const page = await api("/api/tasks?limit=10");
    const list = $("recent");
    list.textContent = "";
    for (const task of page.tasks) {
      rememberStreamToken(task.task_id, task.stream_token);
      const [title, details] = described(task);
      const item = element("li");
      item.dataset.taskId = task.task_id;
      item.dataset.revision = String(task.revision || 1);
      const open = element("button", title);
      open.type = "button";
      open.addEventListener("click", () => openTask(task.task_id, task.stream_token));
      item.append(open, element("span", details, "muted"));
      if (task.gate) item.append(" ", gateBadge(task.gate));
      list.append(item);
    }
  } catch (error) {
    $("recent").textContent = error.message;
  }
  if (document.visibilityState === "visible") recentTimer = setTimeout(loadRecent, RECENT_REFRESH_MS);
}

$("refresh-tasks").addEventListener("click", loadRecent);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") loadRecent();
});
