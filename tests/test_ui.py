"""The test UI in a real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Route, expect, sync_playwright

from conftest import AGENT_NAMES, ServerProcess, StartService, on_stub, start_task
from webhook_receiver import WebhookReceiver, new_secret, webhook_settings

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 60_000
OpenUI = Callable[..., Page]
expect.set_options(timeout=TIMEOUT_MS)  # a wait for a condition, never a pause: slow machines get time


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Chromium is missing: ./scripts/test installs Debian's chromium package"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def open_ui(browser: Browser, start_service: StartService) -> Iterator[OpenUI]:
    """Open /test-ui of a service; at the end, assert the page logged no error and opened no dialog.

    It depends on `start_service` so that its pages close before the services stop. `expected`: console
    errors a test provokes on purpose (Chromium logs each failed request); any other fails the test.
    """
    problems: list[str] = []
    pages: list[Page] = []

    def open_page(service: ServerProcess, expected: tuple[str, ...] = ()) -> Page:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and not any(text in message.text for text in expected):
                problems.append(f"console: {message.text}")

        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        page.goto(f"{service.base_url}/test-ui")
        pages.append(page)
        return page

    yield open_page
    for page in pages:
        page.close()
    assert problems == [], problems


def submit(page: Page, requirement: str, *, confirm: bool = False, stream_tokens: bool = False) -> None:
    page.fill("#requirement", requirement)
    page.set_checked("#confirm", confirm)
    page.set_checked("#stream-tokens", stream_tokens)
    page.click("#submit")
    expect(page.locator("#run-section")).to_be_visible()


def logged_sequences(page: Page) -> list[int]:
    return [int(text) for text in page.locator("#log tbody tr td:first-child").all_inner_texts()]


def test_a_run_from_requirement_to_rendered_deliverables(
    open_ui: OpenUI, start_service: StartService, tmp_path: Path
) -> None:
    service = start_service(FAKE_LLM_DELAY_MS="5")
    page = open_ui(service)
    expect(page.locator("#model-note")).to_contain_text("fake")
    page.fill("#requirement", "开发一个简单的待办事项应用")
    expect(page.locator("#counter")).to_have_text("13 / 20000 characters")
    submit(page, "开发一个简单的待办事项应用", stream_tokens=True)
    expect(page.locator("#task-status")).to_have_text("completed")
    expect(page.locator("#connection")).to_have_text("closed")
    for agent in AGENT_NAMES:
        expect(page.locator(f'#pipeline li[data-agent="{agent}"]')).to_have_attribute("data-state", "done")
    expect(page.locator("#deliverables article")).to_have_count(4)
    expect(page.locator("#deliverables article h1").first).to_have_text("需求分析"), "in the requirement's language"
    expect(page.locator("#deliverables table").first).to_be_visible()
    expect(page.locator("#traceability tr.covered")).to_have_count(3)
    expect(page.locator("#traceability tr.uncovered")).to_have_count(0)
    analysis = page.locator('#deliverables article[data-agent="ProductManager"]')
    expect(analysis.locator("a.definition#ref-AC-1\\.1")).to_have_count(1), "the definition carries the anchor"
    plan = page.locator('#deliverables article[data-agent="QAEngineer"]')
    expect(plan.locator('a[href="#ref-AC-1.1"]').first).to_be_visible(), "a reference links to it"
    expect(page.locator("iframe.diagram")).to_have_attribute("data-state", "drawn")
    design = page.locator('#deliverables article[data-agent="SoftwareDeveloper"]')
    expect(design.locator("code.language-mermaid")).to_have_count(0), "the diagram, not its source"
    heading = page.evaluate("document.querySelector('iframe.diagram').previousElementSibling.textContent")
    assert heading == "架构图", "drawn under its own heading"
    expect(page.frame_locator("iframe.diagram").locator("#diagram svg")).to_be_visible(), "the design's diagram"
    expect(page.locator("#download")).to_have_attribute(
        "href", f"/api/task/{page.inner_text('#task-id')}/result?format=markdown"
    )
    sequences = logged_sequences(page)
    assert sequences == list(range(1, len(sequences) + 1))
    expect(page.locator("#gap-warning")).to_be_hidden()

    page.select_option("#filter-type", "output")
    expect(page.locator("#log tbody tr:visible")).to_have_count(4)
    page.select_option("#filter-type", "")
    expect(page.locator("#recent li").first).to_contain_text("开发一个简单的待办事项应用")
    expect(page.locator("#recent li").first).to_contain_text("completed"), "current without a click on Refresh"
    live = page.locator('#panels .panel[data-agent="ProductManager"] .live')
    expect(live.locator("h1")).to_have_text("需求分析"), "live text is rendered markdown"
    assert not live.inner_text().lstrip().startswith("#")
    page.screenshot(path=str(tmp_path / "finished-run.png"), full_page=True)


def test_cancel_and_confirmation_buttons(open_ui: OpenUI, start_service: StartService) -> None:
    service = start_service(FAKE_LLM_DELAY_MS="40")
    page = open_ui(service)
    submit(page, "Cancel me from the page")
    expect(page.locator('#pipeline li[data-agent="ProductManager"]')).to_have_attribute("data-state", "working")
    page.click("#cancel")
    expect(page.locator("#task-status")).to_have_text("cancelled")
    expect(page.locator("#terminal-message")).to_contain_text("cancelled")

    submit(page, "Ask me first", confirm=True)
    expect(page.locator("#confirmation")).to_be_visible()
    page.click("#reject")
    expect(page.locator("#terminal-message")).to_contain_text("Write what should change")
    page.fill("#feedback", "Add a dark mode.")
    page.click("#reject")
    expect(page.locator("#confirmation")).to_be_hidden()
    expect(page.locator("#confirmation")).to_be_visible()
    expect(page.locator('#panels .panel[data-agent="ProductManager"] .live')).to_contain_text("Add a dark mode.")
    page.click("#approve")
    expect(page.locator("#task-status")).to_have_text("completed")
    expect(page.locator("#deliverables article")).to_have_count(4)


def test_the_confirmation_panel_shows_the_whole_analysis_rendered(
    open_ui: OpenUI, start_service: StartService, tmp_path: Path
) -> None:
    service = start_service()
    page = open_ui(service)
    submit(page, "Build a todo app " + "with many careful details " * 80 + "and a final flourish", confirm=True)
    panel = page.locator("#confirmation")
    expect(panel).to_be_visible()
    expect(page.locator("#confirmation-question")).to_contain_text("Approve it to continue")
    analysis = page.locator("#confirmation-analysis")
    expect(analysis.locator("h2")).to_have_text(
        ["User stories", "Acceptance criteria", "Non-functional requirements", "Open questions"]
    )
    expect(analysis.locator("li").last).to_have_text("Who are the users, and how many?"), "whole, past 1,500 characters"
    expect(analysis.locator("strong").first).to_have_text("US-1 (Must):")
    assert "##" not in analysis.inner_text() and "**" not in analysis.inner_text(), "rendered, not markdown"
    panel.screenshot(path=str(tmp_path / "confirmation.png"))
    page.click("#approve")
    expect(page.locator("#task-status")).to_have_text("completed")


# The page renders a structured deliverable from its data exactly as the server does (render.py): so the
# document that grows while it streams is the one that is finally shown.
RENDERED_BY_THE_PAGE = """async (deliverables) => {
  const { renderDocument } = await import("/static/test_ui_documents.js");
  return deliverables.map((d) => renderDocument(d.agent_name, d.data, d.chinese));
}"""


def test_a_structured_deliverable_streams_as_its_document(
    open_ui: OpenUI, start_service: StartService, tmp_path: Path
) -> None:
    service = start_service(FAKE_LLM_DELAY_MS="40")
    page = open_ui(service)
    submit(page, "开发一个简单的待办事项应用", stream_tokens=True)
    live = '#panels .panel[data-agent="QAEngineer"] .live'
    page.wait_for_function(  # one moment, while the JSON is still being written
        f"""() => {{
          const live = document.querySelector('{live}');
          return live.dataset.writing === "yes" && live.querySelectorAll("tbody tr").length === 2
            && live.querySelector("h1")?.textContent === "测试计划" && !/[{{}}]|"test_cases"/.test(live.textContent);
        }}"""
    )
    page.locator("#panels").screenshot(path=str(tmp_path / "streaming.png"))
    expect(page.locator("#task-status")).to_have_text("completed")
    chinese = page.inner_text("#task-id")
    english = start_task(service.base_url, "Build a todo app | with **pipes**")
    expect(page.locator('#recent li[data-task-id="%s"]' % english)).to_contain_text("completed")
    for task_id in (chinese, english):
        deliverables = httpx.get(f"{service.base_url}/api/task/{task_id}/result").json()["deliverables"]
        inputs = [{**d, "chinese": task_id == chinese} for d in deliverables]
        assert page.evaluate(RENDERED_BY_THE_PAGE, inputs) == [d["content"] for d in deliverables]


def test_uncovered_criteria_and_dangling_references_are_marked(
    open_ui: OpenUI, start_service: StartService, openai_stub: ServerProcess
) -> None:
    service = start_service(**on_stub(openai_stub, "/answers/gaps/v1"))
    page = open_ui(service)
    submit(page, "Plan a school trip")
    expect(page.locator("#task-status")).to_have_text("completed")
    expect(page.locator("#traceability tr.uncovered")).to_have_count(1)
    expect(page.locator("#traceability tr.uncovered")).to_contain_text("AC-1.2")
    expect(page.locator("#traceability h3")).to_contain_text("decision: no_go")
    expect(page.locator("#traceability")).to_contain_text("TC-1 refers to AC-9.9, which nothing defines")


def test_api_errors_are_shown_in_words(open_ui: OpenUI, start_service: StartService) -> None:
    service = start_service(MAX_REQUIREMENT_CHARS="10")
    page = open_ui(service, expected=("the server responded with a status of 422",))
    page.fill("#requirement", "far more than ten characters")
    expect(page.locator("#counter")).to_have_class("error")
    page.click("#submit")
    expect(page.locator("#form-error")).to_contain_text("at most 10 characters. The limit is MAX_REQUIREMENT_CHARS.")


def test_hostile_text_is_shown_as_text(open_ui: OpenUI, start_service: StartService) -> None:
    service = start_service()
    page = open_ui(service)
    hostile = "<img src=x onerror=alert(1)> <script>alert(2)</script> [link](javascript:alert(3))"
    submit(page, hostile)
    expect(page.locator("#task-status")).to_have_text("completed")
    analysis = page.locator('#deliverables article[data-agent="ProductManager"]')
    expect(analysis).to_contain_text("<img src=x onerror=alert(1)>")
    expect(analysis).to_contain_text("<script>alert(2)</script>")
    assert page.locator("#deliverables img, #deliverables script, #deliverables a[href^=javascript]").count() == 0
    expect(page.locator("#log tbody")).to_contain_text("<script>alert(2)</script>")


def test_the_page_resumes_after_a_server_restart(open_ui: OpenUI, start_service: StartService) -> None:
    first = start_service(FAKE_LLM_DELAY_MS="60")
    page = open_ui(first, expected=("ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_CONNECTION_REFUSED"))
    submit(page, "Survive a restart")
    expect(page.locator('#pipeline li[data-agent="ProductManager"]')).to_have_attribute("data-state", "working")
    first.kill()
    expect(page.locator("#connection")).to_have_text("reconnecting")
    start_service(port=first.port, FAKE_LLM_DELAY_MS="60")
    expect(page.locator("#task-status")).to_have_text("failed")
    expect(page.locator("#terminal-message")).to_contain_text("The server restarted")
    sequences = logged_sequences(page)
    assert sequences == list(range(1, len(sequences) + 1)), "no duplicate and no gap across the restart"
    expect(page.locator("#gap-warning")).to_be_hidden()


def test_the_page_asks_for_the_key_once_per_tab(open_ui: OpenUI, start_service: StartService) -> None:
    service = start_service(API_KEYS="ui-key-2468")
    page = open_ui(service, expected=("the server responded with a status of 401",))
    expect(page.locator("#auth")).to_be_visible()
    page.fill("#requirement", "Needs a key")
    page.click("#submit")
    expect(page.locator("#form-error")).to_contain_text("needs an API key")
    page.fill("#api-key", "ui-key-2468")
    page.click("#auth-form button")
    expect(page.locator("#auth")).to_be_hidden()
    submit(page, "Needs a key")
    expect(page.locator("#task-status")).to_have_text("completed")
    assert page.evaluate("sessionStorage.getItem('apiKey')") == "ui-key-2468"
    assert page.evaluate("localStorage.length") == 0, "the key is kept for the tab's session only"
    task_id = page.inner_text("#task-id")
    page.reload()
    expect(page.locator("#task-id")).to_have_text(task_id), "the task's address reopens it with its stream token"
    expect(page.locator("#task-status")).to_have_text("completed")


def test_each_task_has_an_address_that_reopens_and_resumes_it(open_ui: OpenUI, start_service: StartService) -> None:
    service = start_service(FAKE_LLM_DELAY_MS="40")
    page = open_ui(service)
    submit(page, "Follow me across a reload")
    expect(page.locator('#pipeline li[data-agent="ProductManager"]')).to_have_attribute("data-state", "working")
    task_id = page.inner_text("#task-id")
    assert page.url.endswith(f"/test-ui#task={task_id}")
    page.reload()
    expect(page.locator("#task-id")).to_have_text(task_id)
    expect(page.locator("#task-status")).to_have_text("completed")
    sequences = logged_sequences(page)
    assert sequences == list(range(1, len(sequences) + 1)), "replayed from the start, then live, no gap"
    expect(page.locator("#deliverables article")).to_have_count(4)

    other = start_task(service.base_url, "Started elsewhere")
    expect(page.locator("#recent li").first).to_contain_text("Started elsewhere", timeout=TIMEOUT_MS)
    expect(page.locator("#recent li").first).to_contain_text("completed", timeout=TIMEOUT_MS), "kept current"
    page.goto(f"{service.base_url}/test-ui#task={other}")
    expect(page.locator("#task-id")).to_have_text(other)
    expect(page.locator("#task-status")).to_have_text("completed")


def test_a_follow_up_from_the_page_shows_the_revisions_and_what_changed(
    open_ui: OpenUI, start_service: StartService
) -> None:
    service = start_service(FAKE_LLM_DELAY_MS="5")
    page = open_ui(service)
    submit(page, "Build a todo app")
    expect(page.locator("#task-status")).to_have_text("completed")
    expect(page.locator("#timeline li")).to_have_count(1)
    first = page.inner_text("#task-id")

    page.fill("#follow-up", "Add sign-in with email")
    page.click("#follow-up-submit")
    expect(page.locator("#task-id")).not_to_have_text(first)
    expect(page.locator("#task-status")).to_have_text("completed")
    expect(page.locator('#pipeline li[data-agent="ProductManager"]')).to_have_attribute("data-state", "done")
    expect(page.locator("#timeline li")).to_have_count(2)
    expect(page.locator("#timeline li.current")).to_have_attribute("data-revision", "2")
    expect(page.locator("#timeline li.current")).to_contain_text("Add sign-in with email")
    expect(page.locator("#recent li").first).to_have_attribute("data-revision", "2")
    expect(page.locator("#recent li").first).to_contain_text("Revision 2: Add sign-in with email")
    expect(page.locator("#recent li").first).to_contain_text("follows up “Build a todo app”")
    expect(page.locator("#changes-summary")).to_have_text("added: US-3, AC-3.1, TC-7; modified: none; removed: none")
    analysis = page.locator('#deliverables article[data-agent="ProductManager"]')
    expect(analysis.locator("a.definition.id-added")).to_have_text(["US-3", "AC-3.1"])
    expect(page.locator("a.definition.id-modified")).to_have_count(0)

    page.fill("#follow-up", "Add a test for very long titles")
    page.click("#follow-up-submit")
    expect(page.locator("#timeline li")).to_have_count(3)
    expect(page.locator('#pipeline li[data-agent="ProductManager"]')).to_have_attribute("data-state", "carried over")
    expect(page.locator("#timeline li.current")).to_contain_text("revises revision 2")
    page.locator('#timeline li[data-revision="1"] button').click()
    expect(page.locator("#task-id")).to_have_text(first)
    expect(page.locator("#changes")).to_be_hidden()
    expect(page.locator("#timeline li.current")).to_have_attribute("data-revision", "1")


def test_the_tasks_webhook_deliveries_are_shown_and_can_be_redelivered(
    open_ui: OpenUI, start_service: StartService
) -> None:
    receiver = WebhookReceiver(new_secret())
    receiver.script("/ui", 400)
    try:
        service = start_service(**webhook_settings(receiver.secret))
        task_id = start_task(service.base_url, webhook_url=receiver.url("/ui"), webhook_events=["task.completed"])
        receiver.wait_for("/ui", 1)
        page = open_ui(service)
        page.goto(f"{service.base_url}/test-ui#task={task_id}")
        row = page.locator("#webhooks tbody tr")
        expect(row).to_have_attribute("data-status", "failed")
        expect(row).to_contain_text("task.completed")
        expect(row).to_contain_text("400: The receiver answered 400")

        receiver.script("/ui", 204)
        row.get_by_role("button", name="Redeliver").click()
        expect(row).to_have_attribute("data-status", "delivered")
        expect(row.locator("td").nth(3)).to_have_text("2")
        assert [request.webhook_id for request in receiver.at("/ui")] == [row.get_attribute("data-webhook-id")] * 2
    finally:
        receiver.close()


def analysis_item(page: Page, identifier: str) -> Locator:
    """The list item of the rendered analysis that defines `identifier` (US-1, NFR-3 ...)."""
    analysis = page.locator('#deliverables article[data-agent="ProductManager"]')
    return analysis.locator("li").filter(has=page.locator(f'a.definition[id="ref-{identifier}"]'))


def test_the_release_gate_and_each_finding_are_shown_by_their_items(
    open_ui: OpenUI, start_service: StartService, tmp_path: Path
) -> None:
    service = start_service()
    page = open_ui(service)
    submit(page, "Build a fast todo app")
    expect(page.locator("#task-status")).to_have_text("completed")
    task_id = page.inner_text("#task-id")
    expect(page.locator("#gate-badge")).to_have_text("concerns")
    expect(page.locator("#gate-badge")).to_have_attribute("data-gate", "concerns")
    expect(page.locator("#quality-gate")).to_have_text("concerns")
    expect(page.locator("#gate-reasons")).to_contain_text("US-1 (vague-term)")
    by_us1 = analysis_item(page, "US-1").locator(".finding")
    expect(by_us1).to_have_count(1), "the finding sits under the story it is about"
    expect(by_us1).to_have_attribute("data-severity", "warning")
    expect(by_us1).to_contain_text("vague-term")
    expect(by_us1.locator(".suggestion")).to_contain_text("Use a number with a unit or a threshold instead.")
    listed = page.locator('#findings > li[data-target="US-1"]')
    expect(listed.locator("a.target")).to_have_attribute("href", "#ref-US-1")
    expect(listed).to_contain_text("Use a number with a unit or a threshold instead.")
    expect(page.locator("#findings > li").first).to_have_attribute("data-target", "US-1"), "the worst first"
    expect(page.locator("#waive-form")).to_be_visible()
    expect(page.locator(f'#recent li[data-task-id="{task_id}"] .gate')).to_have_text("concerns")
    page.locator("#quality").screenshot(path=str(tmp_path / "quality.png"))

    submit(page, "Build a todo app; the scale is TBD")
    expect(page.locator("#task-status")).to_have_text("completed")
    expect(page.locator("#gate-badge")).to_have_text("fail")
    expect(page.locator("#quality-gate")).to_have_text("fail")
    by_nfr3 = analysis_item(page, "NFR-3").locator(".finding")
    expect(by_nfr3).to_have_attribute("data-severity", "error")
    expect(by_nfr3).to_contain_text("unmeasurable-nfr")
    expect(page.locator("#traceability h3")).to_contain_text("decision: no_go")
    expect(page.locator("#waive-form")).to_be_visible()
    expect(page.locator(f'#recent li[data-task-id="{page.inner_text("#task-id")}"] .gate')).to_have_text("fail")

    submit(page, "Build a todo app to track chores")
    expect(page.locator("#task-status")).to_have_text("completed")
    expect(page.locator("#gate-badge")).to_have_text("pass")
    expect(page.locator("#waive-form")).to_be_hidden(), "a gate that passed has nothing to waive"
    expect(analysis_item(page, "US-1").locator(".finding")).to_have_count(0)


def refusal(response: httpx.Response) -> str:
    """The words the page shows for a refused call: the `detail`, or a validation error's messages."""
    detail = response.json()["detail"]
    return " ".join(error["msg"] for error in detail) if isinstance(detail, list) else str(detail)


def test_a_gate_is_waived_from_the_page_with_a_reason(open_ui: OpenUI, start_service: StartService) -> None:
    service = start_service()
    page = open_ui(
        service, expected=("the server responded with a status of 422", "the server responded with a status of 409")
    )
    submit(page, "Build a todo app; the scale is TBD")
    expect(page.locator("#task-status")).to_have_text("completed")  # the badge shows earlier, from the stream
    expect(page.locator("#gate-badge")).to_have_text("fail")
    task_id = page.inner_text("#task-id")

    page.fill("#waive-reason", "   ")
    page.click("#waive-submit")
    blank = httpx.post(f"{service.base_url}/api/task/{task_id}/waive", json={"reason": "   "})
    assert blank.status_code == 422, blank.text
    expect(page.locator("#waive-error")).to_contain_text(f"The gate was not waived: {refusal(blank)}")
    expect(page.locator("#gate-badge")).to_have_text("fail")

    reason = "The scale is agreed with the customer: 50 users at launch."
    page.fill("#waive-reason", reason)
    page.click("#waive-submit")
    expect(page.locator("#gate-badge")).to_have_text("waived")
    expect(page.locator("#quality-gate")).to_have_text("waived")
    expect(page.locator("#gate-waiver")).to_contain_text(reason)
    expect(page.locator("#gate-waiver strong")).to_have_text("anonymous")
    expect(page.locator("#waive-error")).to_have_text("")
    expect(page.locator("#waive-form")).to_be_hidden()
    expect(page.locator("#traceability h3")).to_contain_text("decision: go")
    expect(page.locator(f'#recent li[data-task-id="{task_id}"] .gate')).to_have_text("waived")
    waiver = httpx.get(f"{service.base_url}/api/task/{task_id}/result").json()["quality"]["gate"]["waiver"]
    assert waiver["reason"] == reason and waiver["by"] == "anonymous", waiver

    submit(page, "Build a fast todo app")  # waived meanwhile by another client: the page says why it refuses
    expect(page.locator("#task-status")).to_have_text("completed")
    expect(page.locator("#gate-badge")).to_have_text("concerns")
    other = page.inner_text("#task-id")
    first = httpx.post(f"{service.base_url}/api/task/{other}/waive", json={"reason": "Accepted elsewhere."})
    assert first.status_code == 200, first.text
    page.fill("#waive-reason", "Accepted here too.")
    page.click("#waive-submit")
    again = httpx.post(f"{service.base_url}/api/task/{other}/waive", json={"reason": "Once more."})
    assert again.status_code == 409, again.text
    expect(page.locator("#waive-error")).to_have_text(f"The gate was not waived: {refusal(again)}")


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/docs", ".opblock-summary-path[data-path='/api/run_task']"),
        ("/redoc", 'h2:has-text("Approve the requirements analysis")'),
    ],
)
def test_api_docs_render_offline(browser: Browser, fake_service: ServerProcess, path: str, operation: str) -> None:
    """Swagger UI and ReDoc render the operations, and no request leaves for another host (a request the
    page's policy refuses never reaches the network, which the route below sees, but logs an error)."""
    page = browser.new_page()
    foreign: list[str] = []
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    def outside(route: Route) -> None:
        foreign.append(route.request.url)
        route.abort()

    page.route(lambda url: not url.startswith((fake_service.base_url, "data:", "blob:")), outside)
    page.goto(f"{fake_service.base_url}{path}")
    expect(page.locator(operation).first).to_be_visible(timeout=TIMEOUT_MS)
    page.close()
    assert foreign == [], foreign
    assert errors == [], errors
