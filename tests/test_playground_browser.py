"""The Playground streams a generation run's answer in real Chromium, with its sampling controls."""

import json

import pytest

from tests.browser import SCREENSHOTS, Shots, assert_no_exception, chromium_page, streamlit_server, wait_for_app_run

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.process]


def test_playground_streams_tokens_with_sampling_controls(tmp_path, monkeypatch):
    from engine import db
    from tests.helpers import build_tiny_gpt2, make_finished_run

    home = tmp_path / "home"
    monkeypatch.setenv("BELLWETHER_HOME", str(home))
    model_dir = build_tiny_gpt2(tmp_path / "gpt2")
    (model_dir / "bellwether.json").write_text(json.dumps({"base_model_source": str(model_dir)}))
    conn = db.connect()
    run_id = make_finished_run(conn, model_dir, task="generation",
                               metrics={"validation_perplexity": 812.0, "base_validation_perplexity": 30100.0})
    conn.close()
    with streamlit_server(home) as server, chromium_page(SCREENSHOTS / "playground") as page:
        shots = Shots(page, SCREENSHOTS / "playground")
        page.goto(f"{server.url}/playground?run={run_id}")
        wait_for_app_run(page)
        assert page.get_by_role("heading", name="Playground").first.is_visible()
        page.get_by_text("Sampling settings").click()
        for control in ("Max new tokens", "Temperature", "Top-p", "Top-k", "Repetition penalty", "Seed"):
            assert page.get_by_text(control, exact=True).first.is_visible(), control
        page.get_by_role("spinbutton", name="Max new tokens").fill("400")
        page.get_by_role("spinbutton", name="Max new tokens").press("Enter")
        wait_for_app_run(page)
        shots("controls")
        box = page.get_by_test_id("stChatInputTextArea")
        box.fill("Shares of the bank rose after results beat forecasts.")
        box.press("Enter")
        messages = page.get_by_test_id("stChatMessage")
        messages.first.wait_for()  # the prompt is shown; the answer follows in the next message
        lengths = []
        for _ in range(600):  # watch the answer grow while the script is still running
            lengths.append(len(messages.nth(1).inner_text()) if messages.count() > 1 else 0)
            running = page.locator("[data-testid='stApp'][data-test-script-state='running']").count()
            if not running and lengths[-1] > 0:
                break
            page.wait_for_timeout(20)
        wait_for_app_run(page, timeout_ms=120_000)
        assert_no_exception(page)
        shots("answer")
        partial = sorted({n for n in lengths if n > 0})
        # the caption alone, then the answer growing piece by piece, then complete
        assert len(partial) >= 3, f"the answer did not arrive in pieces: {lengths[:80]}"
        assert "Shares of the bank rose" in page.inner_text("body")
