"""Every screen opens in a real browser against `streamlit run`, without an exception."""

import pytest

from tests.browser import SCREENSHOTS, Shots, assert_no_exception, chromium_page, streamlit_server, wait_for_app_run

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.process]

SCREENS = ["Data", "Train", "Runs", "Jobs", "Reports", "Feeds", "Monitor"]


def test_every_screen_opens_in_chromium(tmp_path):
    with streamlit_server(tmp_path / "home") as server, chromium_page(SCREENSHOTS / "smoke") as page:
        shots = Shots(page, SCREENSHOTS / "smoke")
        page.goto(server.url)
        wait_for_app_run(page)
        nav = page.get_by_test_id("stSidebarNav")
        for screen in SCREENS:
            nav.get_by_role("link", name=screen, exact=True).click()
            wait_for_app_run(page)
            assert page.get_by_role("heading", name=screen).first.is_visible(), screen
            assert_no_exception(page)
            shots(screen)
