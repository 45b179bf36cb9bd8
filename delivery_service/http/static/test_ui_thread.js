// A task's thread: its revisions, oldest first, each one opening its task, and the follow-up box under a
// completed task.
import { $, api, element, openTask, run } from "./test_ui_common.js";

export async function showThread(result) {
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
    open.addEventListener("click", () => openTask(task.task_id));
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
    openTask(task.task_id, task.stream_token);
  } catch (error) {
    $("follow-up-error").textContent = error.message;
  } finally {
    $("follow-up-submit").disabled = false;
  }
}


$("follow-up-form").addEventListener("submit", submitFollowUp);
