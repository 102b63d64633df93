"""The chat page in a real browser, against a real server, beside nc and IRC users.

Every wait is Playwright's ``expect`` (or a socket read) with a timeout: no
sleeps. The issue's end-to-end list: two pages and a line and an IRC user
talk both ways, history on join and on scroll-back, a private message, the
page living through a server restart, markup shown as text, a phone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from browser_support import STEP, Sockhub, irc_user, line_user, page_errors
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.timeout(90)

# The README's picture comes from the first test: `UPDATE_SCREENSHOT=1 pytest
# tests/browser` writes it (otherwise the shot goes to the test's tmp_path,
# so a test run leaves the work tree clean).
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "web-door.png"


@pytest.fixture
def pages(browser: Browser) -> Iterator[Any]:
    """Open pages (``open(url, nick, **context options)``); close them after."""
    contexts = []

    def open_page(url: str, nick: str, **options: Any) -> Page:
        context = browser.new_context(**options)
        context.set_default_timeout(STEP * 1000)
        contexts.append(context)
        page = context.new_page()
        page.errors = page_errors(page)  # type: ignore[attr-defined]
        page.goto(url)
        page.fill("#nick", nick)
        page.press("#nick", "Enter")
        expect(page.locator("#status")).to_have_text(f"Connected as {nick}", timeout=STEP * 1000)
        expect(page.locator("#title")).to_have_text("#lobby")
        return page

    yield open_page
    for context in contexts:
        context.close()


def say(page: Page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator("#input")).to_have_value("")


def log(page: Page) -> Any:
    """The message list of the conversation on screen."""
    return page.locator(".log:visible")


def test_pages_line_and_irc_users_chat_both_ways(
        server: Sockhub, pages: Any, tmp_path: Path) -> None:
    line = line_user(server.ports["chat"], "lina")
    irc = irc_user(server.ports["irc"], "ivan")
    try:
        # History on join: said before any page was open.
        line.send("said before the pages came")
        line.expect("<lina> said before the pages came")
        alice = pages(server.url, "alice")
        expect(log(alice)).to_contain_text("<lina> said before the pages came")
        bob = pages(server.url, "bob")
        expect(bob.locator("#member-list")).to_contain_text("alice")
        expect(log(alice)).to_contain_text("bob joined")

        say(alice, "hello from alice's browser")
        expect(log(bob)).to_contain_text("<alice> hello from alice's browser")
        line.expect("<alice> hello from alice's browser")
        irc.expect("PRIVMSG #lobby :hello from alice's browser")
        say(bob, "/me waves from bob's browser")
        expect(log(alice)).to_contain_text("* bob waves from bob's browser")
        line.expect("** bob waves from bob's browser")
        irc.expect("ACTION waves from bob's browser")

        line.send("hello from nc")
        irc.send("PRIVMSG #lobby :hello from irc")
        for page in (alice, bob):
            expect(log(page)).to_contain_text("<lina> hello from nc")
            expect(log(page)).to_contain_text("<ivan> hello from irc")

        # A private message: a conversation per nick, both ways.
        say(alice, "/msg bob just between us")
        conv = bob.locator("#convs button", has_text="alice")
        expect(conv).to_contain_text("1")  # the unread count
        conv.click()
        expect(log(bob)).to_contain_text("<alice> just between us")
        say(bob, "agreed")
        expect(alice.locator("#title")).to_have_text("bob")
        expect(log(alice)).to_contain_text("<bob> agreed")
        irc.send("PRIVMSG alice :a word from irc")
        alice.locator("#convs button", has_text="ivan").click()
        expect(log(alice)).to_contain_text("<ivan> a word from irc")
        say(alice, "got it")
        irc.expect("PRIVMSG ivan :got it")

        # Unread counts per room, and the nick notice.
        alice.locator("#convs button", has_text="#lobby").click()
        say(bob, "/join #side")
        expect(bob.locator("#title")).to_have_text("#side")
        bob.locator("#convs button", has_text="#lobby").click()
        say(bob, "/nick bobby")
        expect(log(alice)).to_contain_text("bob is now known as bobby")
        line.expect("bob is now known as bobby")
        irc.send("PRIVMSG alice :see you in #side")
        expect(alice.locator("#convs button", has_text="ivan")).to_contain_text("1")
        alice.set_viewport_size({"width": 1000, "height": 560})
        alice.locator("#input").focus()
        shot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "page.png"
        assert alice.screenshot(path=str(shot))[:8] == b"\x89PNG\r\n\x1a\n"
        irc.send("PART #lobby :off to #side")
        expect(log(alice)).to_contain_text("ivan left (off to #side)")
        expect(alice.locator("#member-list")).not_to_contain_text("ivan")
        assert alice.errors == [] and bob.errors == []  # type: ignore[attr-defined]
    finally:
        line.close()
        irc.close()


def test_scroll_back_loads_older_history(server: Sockhub, pages: Any) -> None:
    irc = irc_user(server.ports["irc"], "oldie", "#archive")
    try:
        for n in range(12):
            irc.send(f"PRIVMSG #archive :archived {n:02}")
        carol = pages(server.url, "carol")
        say(carol, "/join #archive")
        expect(log(carol)).to_contain_text("archived 11")  # --history 5: the last five
        expect(log(carol)).not_to_contain_text("archived 06")
        carol.locator("#older").click()  # (scrolling to the top does the same)
        expect(log(carol)).to_contain_text("archived 00")  # a page of up to 50
        expect(carol.locator("#older")).to_be_hidden()
        texts = log(carol).locator("li.msg .text").all_text_contents()
        assert texts == [f"archived {n:02}" for n in range(12)]
    finally:
        irc.close()


def test_markup_and_script_are_shown_as_text(server: Sockhub, pages: Any) -> None:
    dave = pages(server.url, "dave")
    irc = irc_user(server.ports["irc"], "mallory")
    try:
        evil = "<img src=x onerror=alert(1)> and <script>alert(2)</script>"
        irc.send(f"PRIVMSG #lobby :{evil}")
        irc.send("PRIVMSG dave :<b>bold?</b><iframe src=javascript:alert(3)>")
        expect(log(dave)).to_contain_text(f"<mallory> {evil}")
        dave.locator("#convs button", has_text="mallory").click()
        expect(log(dave)).to_contain_text("<b>bold?</b><iframe src=javascript:alert(3)>")
        for tag in ("img", "script", "iframe", "b"):
            assert dave.locator(f"#logs {tag}").count() == 0
        assert dave.errors == []  # type: ignore[attr-defined]  # no dialog: nothing ran
    finally:
        irc.close()


def test_phone_sized_screen(server: Sockhub, pages: Any) -> None:
    phone = pages(server.url, "erin", viewport={"width": 375, "height": 667},
                  is_mobile=True, has_touch=True, timezone_id="Asia/Kolkata", locale="en-GB")
    say(phone, "typed on a phone")
    message = log(phone).locator("li", has_text="typed on a phone")
    expect(message).to_be_in_viewport()
    # The time is the viewer's (UTC+05:30 here), not the server's.
    stamp = message.locator("time")
    sent = datetime.fromisoformat(stamp.get_attribute("datetime").replace("Z", "+00:00"))
    expect(stamp).to_have_text(sent.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%H:%M"))
    expect(phone.locator("#input")).to_be_in_viewport()
    expect(phone.locator("#convs")).to_be_in_viewport()
    # Nothing wider than the screen; the members panel opens on demand.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    expect(phone.locator("#members")).to_be_hidden()
    phone.locator("#members-toggle").click()
    expect(phone.locator("#member-list")).to_contain_text("erin")
    expect(phone.locator("#members-toggle")).to_have_attribute("aria-expanded", "true")
    # The keyboard alone: Tab reaches the input, Enter sends.
    phone.keyboard.press("Escape")
    expect(phone.locator("#members")).to_be_hidden()
    phone.locator("#join-room").focus()
    phone.keyboard.press("Tab")
    phone.keyboard.press("Tab")
    expect(phone.locator("#pane")).to_be_focused()
    order = []
    while len(order) < 4 and order[-1:] != ["input"]:  # past "Load older", if shown
        phone.keyboard.press("Tab")
        order.append(phone.evaluate("document.activeElement.id"))
    assert order[-1] == "input" and set(order) <= {"older", "input"}, order
    phone.keyboard.type("sent with the keyboard")
    phone.keyboard.press("Enter")
    expect(log(phone)).to_contain_text("<erin> sent with the keyboard")
    assert phone.errors == []  # type: ignore[attr-defined]


def test_page_recovers_after_a_server_restart(
        browser: Browser, pages: Any, tmp_path: Path) -> None:
    # --history 2: the join brings back only the last two of what was missed;
    # the rest must come from `history after`, and the overlap only once.
    hub = Sockhub(tmp_path, "--history", "2", "--flood-burst", "100")
    hub.start()
    try:
        frank = pages(hub.url, "frank")
        say(frank, "before the restart")
        expect(log(frank)).to_contain_text("<frank> before the restart")

        hub.stop()
        expect(frank.locator("#status")).to_contain_text("server shutting down")
        # What is said while the page is away: only the line door is open,
        # so the page cannot come back before it is in history.
        hub.start(doors=("chat",))
        line = line_user(hub.ports["chat"], "gina")
        for n in range(5):
            line.send(f"while you were away {n}")
            line.expect(f"<gina> while you were away {n}")
        line.close()
        hub.stop()

        hub.start()  # the same ports and data directory
        expect(frank.locator("#status")).to_have_text("Connected as frank", timeout=30_000)
        for n in range(5):
            expect(log(frank).locator("li", has_text=f"while you were away {n}")).to_have_count(1)
        expect(log(frank).locator("li", has_text="before the restart")).to_have_count(1)
        say(frank, "back again")
        expect(log(frank).locator("li", has_text="back again")).to_have_count(1)
        assert log(frank).locator("li.msg .text").all_text_contents() == [
            "before the restart", *(f"while you were away {n}" for n in range(5)), "back again"]
        assert frank.errors == [] or all(  # type: ignore[attr-defined]
            "WebSocket" in e for e in frank.errors)  # type: ignore[attr-defined]
    finally:
        hub.stop()
