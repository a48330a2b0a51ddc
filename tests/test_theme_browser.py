"""Light and dark: the dashboard follows the browser's colour-scheme preference (.streamlit/config.toml has
[theme.light] and [theme.dark]), and its charts follow along, so their labels stay readable on either background."""

from __future__ import annotations

import pytest

from tests.browser import SCREENSHOTS, Shots, assert_no_exception, streamlit_server, wait_for_app_run

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.process]


def _luminance(css: str) -> float:
    """WCAG relative luminance of an rgb()/rgba() CSS colour."""
    channels = [float(v) / 255 for v in css[css.index("(") + 1:css.index(")")].split(",")[:3]]
    r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: float, b: float) -> float:
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def test_the_theme_follows_the_browsers_preference_and_charts_stay_readable(tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    from engine import db
    from engine.data import datasets
    from tests.browser import CHROMIUM

    home = tmp_path / "home"
    monkeypatch.setenv("BELLWETHER_HOME", str(home))
    rows = "\n".join(f"Shares {'rose' if i % 2 else 'fell'} {i},{'positive' if i % 2 else 'negative'}" for i in range(40))
    datasets.import_file(db.connect(), ("text,label\n" + rows).encode(), "l.csv", "fpb")
    folder = SCREENSHOTS / "theme"
    folder.mkdir(parents=True, exist_ok=True)
    seen = {}
    with streamlit_server(home) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            for scheme in ("light", "dark"):
                page = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme=scheme).new_page()
                page.goto(server.url)
                wait_for_app_run(page)
                assert_no_exception(page)
                page.get_by_role("tab", name="Label distribution").click()
                tick = page.locator(".js-plotly-plot .xtick text").first
                tick.wait_for()
                background = page.get_by_test_id("stApp").evaluate("e => getComputedStyle(e).backgroundColor")
                label = tick.evaluate("e => getComputedStyle(e).fill")
                seen[scheme] = (_luminance(background), _luminance(label))
                Shots(page, folder)(f"data page {scheme}")
                page.context.close()
        finally:
            browser.close()
    light_bg, light_text = seen["light"]
    dark_bg, dark_text = seen["dark"]
    assert light_bg > 0.8 and dark_bg < 0.05, seen
    # chart labels dark on light, light on dark, at WCAG's contrast for text in graphics (3:1) or better
    assert dark_text > light_text, seen
    assert _contrast(light_bg, light_text) >= 3 and _contrast(dark_bg, dark_text) >= 3, seen


GLYPHS_DIFFER = """() => {
    // Draw a Chinese character and a code point no font has (drawn as the missing-glyph box): with a CJK font
    // installed they differ; without one both are the same box.
    const draw = (ch) => { const c = document.createElement('canvas'); c.width = c.height = 40;
        const g = c.getContext('2d'); g.font = '32px sans-serif'; g.fillText(ch, 2, 32);
        return Array.from(g.getImageData(0, 0, 40, 40).data).join(','); };
    return [draw('银') !== draw('\\u{10FFFD}'), draw('银') !== draw('行')];
}"""


def test_chinese_text_renders_as_characters_not_boxes(tmp_path, monkeypatch):
    """`make test` installs fonts-noto-cjk with Chromium: Chinese dataset names and texts show as characters."""
    from playwright.sync_api import expect

    from engine import db
    from engine.data import datasets
    from tests.browser import chromium_page

    home = tmp_path / "home"
    monkeypatch.setenv("BELLWETHER_HOME", str(home))
    rows = "\n".join(f"银行股{'大涨' if i % 2 else '大跌'}{i},{'positive' if i % 2 else 'negative'}" for i in range(20))
    datasets.import_file(db.connect(), ("text,label\n" + rows).encode(), "l.csv", "股评")
    with streamlit_server(home) as server, chromium_page(SCREENSHOTS / "cjk") as page:
        page.goto(server.url)
        wait_for_app_run(page)
        expect(page.get_by_text("股评:1 —")).to_be_visible()
        assert page.evaluate(GLYPHS_DIFFER) == [True, True], "no CJK font: install fonts-noto-cjk (make test does)"
        Shots(page, SCREENSHOTS / "cjk")("chinese dataset")
