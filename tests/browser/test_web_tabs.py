"""Two tabs of one account in a real browser (multiclient, docs/accounts.md): the
second tab joins the person the first holds, shows the rooms they are in without
an error, and what one tab says the other shows as its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser_support import STEP, Sockhub, page_errors
from playwright.sync_api import Browser, expect

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sockhub]:
    hub = Sockhub(tmp_path_factory.mktemp("data"), "--flood-burst", "100")
    hub.start(doors=("chat", "web"))
    try:
        yield hub
    finally:
        hub.stop()


def test_a_second_tab_joins_the_first_tab_s_person(server: Sockhub, browser: Browser) -> None:
    context = browser.new_context()  # one cookie jar: both tabs are logged in
    context.set_default_timeout(STEP * 1000)
    try:
        laptop = context.new_page()
        errors = page_errors(laptop)
        laptop.goto(server.url)
        laptop.fill("#account", "multi")
        laptop.fill("#password", "correct-horse")
        laptop.click("#do-register")
        expect(laptop.locator("#status")).to_have_text("Connected as multi (logged in as multi)")
        laptop.fill("#input", "/join #side")
        laptop.press("#input", "Enter")
        expect(laptop.locator("#title")).to_have_text("#side")

        tab = context.new_page()
        errors += page_errors(tab)
        tab.goto(server.url)
        # Not "multi_": the same person, in the same rooms.
        expect(tab.locator("#status")).to_have_text("Connected as multi (logged in as multi)")
        expect(tab.locator("#convs button", has_text="#side")).to_be_visible()
        expect(tab.locator("#convs button", has_text="#lobby")).to_be_visible()
        tab.locator("#convs button", has_text="#side").click()
        expect(tab.locator("#title")).to_have_text("#side")
        tab.fill("#input", "from the second tab")
        tab.press("#input", "Enter")
        expect(laptop.locator(".log:visible .mine")).to_contain_text("from the second tab")
        expect(tab.locator(".log:visible .mine")).to_contain_text("from the second tab")
        expect(tab.locator(".log:visible")).not_to_contain_text("Error")

        tab.close()  # the laptop's tab stays in, and still hears its room
        laptop.fill("#input", "still here")
        laptop.press("#input", "Enter")
        expect(laptop.locator(".log:visible .mine").last).to_contain_text("still here")
        expect(laptop.locator("#status")).to_have_text("Connected as multi (logged in as multi)")
        assert errors == []
    finally:
        context.close()
