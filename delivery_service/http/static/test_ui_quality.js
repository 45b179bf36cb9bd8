// The release gate and the quality findings of a task (the result's `quality`, from the service's rules:
// docs/quality.md). The gate is a badge by the task's status (from the stream, then the result) and in the
// recent tasks; each finding is shown next to the item it is about, under that identifier's definition in
// the rendered deliverables, and in a list grouped by identifier; a gate that failed or has concerns can
// be waived with a reason (POST /api/task/{id}/waive), after which the page reloads the task's result.
import { $, api, element, run } from "./test_ui_common.js";

const WAIVABLE = new Set(["fail", "concerns"]);
const RANK = { error: 0, warning: 1, info: 2 };

function paint(badge, status, note = "") {
  badge.textContent = status;
  badge.dataset.gate = status;
  badge.title = note;
}

// A gate as a badge, for lists (the recent tasks).
export function gateBadge(status) {
  const badge = element("span", undefined, "gate");
  paint(badge, status);
  return badge;
}

// The badge by the task's status; `note` says when it is not yet the final gate.
export function showGateStatus(status, note = "") {
  paint($("gate-badge"), status, note);
  $("gate-status").hidden = false;
}

export function hideQuality() {
  $("gate-status").hidden = true;
  $("quality").hidden = true;
  $("waive-reason").value = "";
  $("waive-error").textContent = "";
}

// The result's quality: the gate, then the findings in `container` (the rendered deliverables, whose
// identifiers are already linked to their definitions).
export function showQuality(result, container) {
  $("quality").hidden = !result.quality;
  $("gate-status").hidden = !result.quality; // a task that did not complete has no gate, whatever the stream said
  if (!result.quality) return;
  showGate(result.quality);
  showFindings(result.quality.findings, container);
}

function showGate({ gate, counts }) {
  showGateStatus(gate.status);
  paint($("quality-gate"), gate.status);
  const tally = Object.entries(counts).map(([severity, count]) => `${count} ${severity}${count === 1 || severity === "info" ? "" : "s"}`);
  $("quality-counts").textContent = `${tally.join(" · ")} · minimum coverage ${Math.round(gate.policy.min_coverage * 100)}%`;
  $("gate-reasons").replaceChildren(...gate.reasons.map((reason) => element("li", reason)));
  const waiver = gate.waiver;
  $("gate-waiver").hidden = !waiver;
  if (waiver) {
    const when = element("time", new Date(waiver.at).toLocaleString());
    when.dateTime = waiver.at;
    $("gate-waiver").replaceChildren("Waived by ", element("strong", waiver.by), " on ", when, ": ", element("q", waiver.reason, "waiver-reason"));
  }
  $("waive-form").hidden = !WAIVABLE.has(gate.status);
}

function findingNote(finding) {
  const note = element("div", undefined, "finding");
  note.dataset.severity = finding.severity;
  note.dataset.findingId = finding.id;
  note.title = `${finding.id}: rule ${finding.rule}, field ${finding.field}`;
  note.append(
    element("span", finding.severity, "severity"),
    ` ${finding.rule}: ${finding.message} `,
    element("span", `→ ${finding.suggestion}`, "suggestion"),
  );
  return note;
}

// Grouped by identifier, the group with the worst finding first; each group is also placed under the
// identifier's definition in the deliverables (a table row gets a row of its own below it).
function showFindings(findings, container) {
  const groups = new Map();
  for (const finding of findings) groups.set(finding.target, [...(groups.get(finding.target) || []), finding]);
  const worst = (group) => Math.min(...group.map((finding) => RANK[finding.severity] ?? 3));
  const ordered = [...groups].sort(([, a], [, b]) => worst(a) - worst(b));
  const list = $("findings");
  list.replaceChildren(...(ordered.length ? [] : [element("li", "No findings.", "muted")]));
  for (const [target, group] of ordered) {
    const definition = container.querySelector(`a.definition[id="ref-${CSS.escape(target)}"]`);
    const item = element("li");
    item.dataset.target = target;
    const name = element(definition ? "a" : "strong", target, "target");
    if (definition) name.href = `#ref-${target}`;
    item.append(name, ...group.map(findingNote));
    list.append(item);
    if (definition) placeBy(definition, target, group);
  }
}

function placeBy(definition, target, group) {
  const notes = element("div", undefined, "findings-here");
  notes.dataset.target = target;
  notes.append(...group.map(findingNote));
  const row = definition.closest("tr");
  if (row) {
    const holder = element("tr", undefined, "finding-row");
    const cell = element("td");
    cell.colSpan = row.cells.length;
    cell.append(notes);
    holder.append(cell);
    row.after(holder);
  } else {
    (definition.closest("li, p") || definition.parentElement).append(notes);
  }
}

async function waive(submit) {
  submit.preventDefault();
  const taskId = run.taskId;
  $("waive-error").textContent = "";
  $("waive-submit").disabled = true;
  try {
    const result = await api(`/api/task/${encodeURIComponent(taskId)}/waive`, {
      method: "POST",
      body: JSON.stringify({ reason: $("waive-reason").value }),
    });
    if (taskId !== run.taskId) return;
    $("waive-reason").value = "";
    showGate(result.quality);
    window.dispatchEvent(new CustomEvent("task-updated", { detail: { taskId } }));
  } catch (error) {
    $("waive-error").textContent = `The gate was not waived: ${error.message}`;
  } finally {
    $("waive-submit").disabled = false;
  }
}

$("waive-form").addEventListener("submit", waive);
