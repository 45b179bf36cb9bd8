// The test UI's webhook deliveries: the open task's delivery log (GET /api/task/{id}/webhooks), refreshed
// while a message is pending, with a redeliver button for a delivered or failed one.
import { $, api, element, run } from "./test_ui_common.js";

const WEBHOOKS_REFRESH_MS = 2000;
let webhooksTimer = null;

export function hideWebhooks() {
  clearTimeout(webhooksTimer);
  $("webhooks-section").hidden = true;
  $("webhooks").tBodies[0].textContent = "";
  $("webhooks-error").textContent = "";
}

export async function showWebhooks() {
  clearTimeout(webhooksTimer);
  const taskId = run.taskId;
  let deliveries;
  try {
    ({ deliveries } = await api(`/api/task/${encodeURIComponent(taskId)}/webhooks`));
  } catch (error) {
    $("webhooks-error").textContent = `The webhook deliveries could not be loaded: ${error.message}`;
    return;
  }
  if (taskId !== run.taskId) return;
  const rows = $("webhooks").tBodies[0];
  rows.textContent = "";
  for (const delivery of deliveries) rows.append(deliveryRow(delivery));
  $("webhooks-section").hidden = !deliveries.length;
  if (deliveries.some((delivery) => delivery.status === "pending")) {
    webhooksTimer = setTimeout(showWebhooks, WEBHOOKS_REFRESH_MS);
  }
}

function deliveryRow(delivery) {
  const row = element("tr");
  row.dataset.webhookId = delivery.webhook_id;
  row.dataset.status = delivery.status;
  const answer = [delivery.last_status_code, delivery.last_error].filter((part) => part !== null).join(": ");
  const next = delivery.next_attempt_at ? new Date(delivery.next_attempt_at).toLocaleTimeString() : "";
  for (const text of [delivery.type, delivery.url, delivery.status, String(delivery.attempts), answer, next]) {
    row.append(element("td", text));
  }
  const actions = element("td");
  if (delivery.status !== "pending") {
    const again = element("button", "Redeliver");
    again.type = "button";
    again.addEventListener("click", () => redeliver(delivery.webhook_id));
    actions.append(again);
  }
  row.append(actions);
  return row;
}

async function redeliver(webhookId) {
  $("webhooks-error").textContent = "";
  try {
    const path = `/api/task/${encodeURIComponent(run.taskId)}/webhooks/${encodeURIComponent(webhookId)}/redeliver`;
    await api(path, { method: "POST" });
  } catch (error) {
    $("webhooks-error").textContent = error.message;
  }
  await showWebhooks();
}

$("webhooks-refresh").addEventListener("click", () => showWebhooks());
