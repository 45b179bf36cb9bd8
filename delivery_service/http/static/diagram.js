// Draws one mermaid diagram sent by the test UI. This page runs in a sandboxed frame (scripts, but an
// opaque origin: no access to the test UI, its storage or its API key), with mermaid's strict security
// level, because the diagram's source is model output.
"use strict";

window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });

window.addEventListener("message", async (message) => {
  if (message.source !== window.parent || typeof message.data?.source !== "string") return;
  const target = document.getElementById("diagram");
  try {
    const { svg } = await window.mermaid.render("diagram-svg", message.data.source);
    target.innerHTML = svg; // sanitised by mermaid (securityLevel strict), inside this sandbox
    target.dataset.state = "drawn";
  } catch (error) {
    target.textContent = `The diagram could not be drawn: ${error.message}`;
    target.dataset.state = "failed";
  }
  window.parent.postMessage({ diagramHeight: document.body.scrollHeight, state: target.dataset.state }, "*");
});
