"""The chat page's login in a real browser (issue 14): register or log in on the page,
reload, and still be logged in; the session is an HttpOnly cookie the page's script
never sees and no URL carries; logging out forgets it. The account's read marker and
private messages outlive the page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import STEP, Sockhub, line_user, page_errors
from playwright.sync_api import Browser, expect

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sockhub]:
    hub = Sockhub(tmp_path_factory.mktemp("data"), "--history", "5", "--flood-burst", "100")
    hub.start(doors=("chat", "web"))
    try:
        yield hub
    finally:
        hub.stop()


def status(page: Any) -> Any:
    return page.locator("#status")


def test_login_survives_a_reload_and_logout_forgets_it(server: Sockhub, browser: Browser) -> None:
    context = browser.new_context()
    context.set_default_timeout(STEP * 1000)
    try:
        page = context.new_page()
        errors = page_errors(page)
        page.goto(server.url)
        expect(page.locator("#do-register")).to_be_visible()  # --accounts open
        page.fill("#account", "webby")
        page.fill("#password", "correct-horse")
        page.click("#do-register")
        expect(status(page)).to_have_text("Connected as webby (logged in as webby)")
        expect(page.locator("#logout")).to_be_visible()

        page.reload()
        expect(status(page)).to_have_text("Connected as webby (logged in as webby)")
        expect(page.locator("#title")).to_have_text("#lobby")
        assert "sockhub_session" not in page.evaluate("document.cookie")  # HttpOnly
        [cookie] = [c for c in context.cookies() if c["name"] == "sockhub_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        assert cookie["value"] not in page.url

        # What the account reads on another door: a line user talks meanwhile,
        # and the page, reloaded, shows only what came after it left.
        talker = line_user(server.ports["chat"], "talker")
        try:
            talker.send("seen on the page")
            expect(page.locator(".log:visible")).to_contain_text("seen on the page")
            page.goto("about:blank")  # the page leaves: its marker moves
            talker.send("said while away")
            talker.expect("said while away")
            page.goto(server.url)
            expect(status(page)).to_have_text("Connected as webby (logged in as webby)")
            log = page.locator(".log:visible")
            expect(log).to_contain_text("said while away")
            expect(log).not_to_contain_text("seen on the page")
            # A private message is the account's: after a reload it is still there.
            talker.send("/msg webby psst")
            expect(page.locator("#convs button", has_text="talker")).to_be_visible()
            page.reload()
            expect(status(page)).to_have_text("Connected as webby (logged in as webby)")
            page.locator("#convs button", has_text="talker").click()
            expect(page.locator(".log:visible")).to_contain_text("psst")
        finally:
            talker.close()

        page.click("#logout")
        expect(page.locator("#acct")).to_be_visible()
        expect(page.locator("#logout")).to_be_hidden()
        assert not [c for c in context.cookies() if c["name"] == "sockhub_session"]
        page.reload()
        expect(page.locator("#nick")).to_be_visible()
        expect(status(page)).not_to_contain_text("Connected")

        # And back in with the password (Enter in the form), as anyone returning would.
        page.fill("#account", "webby")
        page.fill("#password", "correct-horse")
        page.press("#password", "Enter")
        expect(status(page)).to_have_text("Connected as webby (logged in as webby)")
        assert errors == []
    finally:
        context.close()
