// The event log: every event of the task on screen, in order, filtered by agent and type.
import { $, element } from "./test_ui_common.js";

export function clearLog() {
  $("log").tBodies[0].textContent = "";
}

export function logEvent(event) {
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

for (const id of ["filter-agent", "filter-type"]) {
  $(id).addEventListener("change", () => [...$("log").tBodies[0].rows].forEach(applyFilter));
}
