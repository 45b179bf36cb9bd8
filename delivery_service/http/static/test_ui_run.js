// The task's run: the pipeline of the agents (GET /api/agents), a panel per agent with its thoughts and its text as it
// is written (a structured deliverable shows as its document, test_ui_documents.js), and the
// confirmation panel with the whole analysis, rendered.
import { $, AGENTS, element, markdown, run } from "./test_ui_common.js";
import { liveMarkdown } from "./test_ui_documents.js";

export function resetPanels() {
  $("pipeline").textContent = "";
  $("panels").textContent = "";
  hideConfirmation();
  for (const { name, title } of AGENTS) {
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

function panel(agent) {
  return document.querySelector(`#panels .panel[data-agent="${agent}"]`);
}

export function setStage(agent, state) {
  const stage = document.querySelector(`#pipeline li[data-agent="${agent}"]`);
  if (!stage) return;
  stage.dataset.state = state;
  const { title } = AGENTS.find(({ name }) => name === agent);
  stage.querySelector(".state").textContent = `${title}: ${state}`;
}

export function failWorkingStages() {
  for (const { name } of AGENTS) {
    if (document.querySelector(`#pipeline li[data-agent="${name}"]`).dataset.state === "working") setStage(name, "failed");
  }
}

export function addThought(agent, text) {
  panel(agent)?.querySelector(".thoughts").append(element("p", text, "thought"));
}

// An agent's text as markdown, rendered again in full at most once per frame: a finished document as it
// is, or (`writing`) the model's answer so far, its deliverable's JSON shown as the document it will be.
export function showLiveText(agent, text, writing = false) {
  run.live[agent] = { text, writing };
  const live = panel(agent)?.querySelector(".live");
  if (!live || live.dataset.pending) return;
  live.dataset.pending = "1";
  requestAnimationFrame(() => {
    delete live.dataset.pending;
    const shown = run.live[agent];
    const source = shown.writing ? liveMarkdown(agent, shown.text, run.chinese) : shown.text;
    live.innerHTML = markdown.render(source); // raw HTML escaped, unsafe links refused
    live.dataset.writing = shown.writing ? "yes" : "no";
    if (shown.writing) live.parentElement.scrollTop = live.parentElement.scrollHeight; // follow the document as it grows
  });
}

export function appendLiveText(agent, text) {
  const shown = run.live[agent];
  showLiveText(agent, (shown && shown.writing ? shown.text : "") + text, true);
}

// The analysis waiting for a decision, whole and rendered (the event's metadata carries its markdown).
export function showConfirmation(event) {
  $("confirmation-question").textContent = event.metadata.question || "";
  $("confirmation-analysis").innerHTML = markdown.render(event.metadata.analysis || event.content); // escaped
  $("feedback").value = "";
  $("confirmation").hidden = false;
}

export function hideConfirmation() {
  $("confirmation").hidden = true;
}
