"""In Chromium: names and labels carrying a link, an image and HTML show as text, and no request leaves for another
host while the Data, Feeds and Monitor pages show them."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.browser import SCREENSHOTS, Shots, assert_no_exception, chromium_page, streamlit_server, wait_for_app_run

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.process]

IMAGE = "![x](http://evil.example/pixel.png)"
LINK = "[Session expired - sign in again](http://evil.example/login)"


def _seed(home) -> None:
    import os

    os.environ["BELLWETHER_HOME"] = str(home)
    from engine import db
    from engine.data import datasets
    from engine.monitor import feeds

    conn = db.connect()
    label = "pos <img src='http://evil.example/label.png'>"
    rows = "".join(f"Profit rose {i},{label}\nSales fell {i},negative\n" for i in range(6))
    # A dataset name may hold neither '/' nor ':'; its image points at a relative path, the label at another host.
    datasets.import_file(conn, ("text,label\n" + rows).encode(), "x.csv", "![x](evil.png) [sign in](evil.example)",
                         created_by="ana")
    news = f"time,title,source,topic\n2020-07-01,Shares fall,\"{LINK} {IMAGE}\",\"{IMAGE}\"\n"
    feeds.import_file(conn, news.encode(), "n.csv", "markets")
    conn.close()


def test_payloads_render_as_text_and_nothing_is_fetched_from_another_host(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("BELLWETHER_HOME", str(home))
    _seed(home)
    with streamlit_server(home, {"BELLWETHER_USER": "ana"}) as server, \
            chromium_page(SCREENSHOTS / "markup") as page:
        shots = Shots(page, SCREENSHOTS / "markup")
        hosts: set[str] = set()
        page.on("request", lambda request: hosts.add(urlparse(request.url).hostname or request.url[:20]))
        for path in ("data", "feeds", "monitor"):
            page.goto(f"{server.url}/{path}")
            wait_for_app_run(page)
            assert_no_exception(page)
            page.wait_for_timeout(1000)  # images and charts would have asked for their files by now
            shots(path)
            html = page.content()
            assert "evil.example/login\"" not in html and "src=\"http://evil.example" not in html, path
            assert page.locator("a[href*='evil.example']").count() == 0, path
            assert page.locator("img[src*='evil']").count() == 0, path
            if path == "data":  # the name as the analyst typed it, brackets and all, in the dataset's summary line
                summary = page.get_by_test_id("stMarkdown").filter(has_text="text-classification, 12 rows")
                assert "![x](evil.png) [sign in](evil.example):1" in summary.first.inner_text()
        assert hosts <= {"127.0.0.1"}, hosts
