"""The hotline's sans-I/O parts: menu files, telnet bytes, keys, the menu walk on a manual clock."""

from __future__ import annotations

import pytest
from tests.helpers import split_at_every_byte
from tests.irc_support import ManualClock

from sockhub.errors import ConfigError
from sockhub.protocols.base import ConnectionInfo
from sockhub.protocols.ivr import CallerProtocol, CallerSettings, MenuError, parse_menu
from sockhub.protocols.ivr.keys import CallerInput, Enter, Key, Line, Word
from sockhub.protocols.ivr.telnet import TelnetFilter
from sockhub.services.ivr import EXAMPLE_MENU, load_menu, packaged_menu

SETTINGS = CallerSettings(timeout=5.0, digit_timeout=2.0, max_timeouts=2, max_failures=3)


class Walk:
    """A caller protocol on a manual clock; ``press`` returns what it said since."""

    def __init__(self, text: str | None = None, settings: CallerSettings = SETTINGS) -> None:
        menu = parse_menu(text) if text is not None else load_menu(None)
        self.clock = ManualClock()
        self.caller = CallerProtocol(menu, settings)
        self.caller.clock = self.clock
        self.caller.connection_made(ConnectionInfo())

    def out(self) -> str:
        return b"".join(self.caller.data_to_send()).decode("utf-8", "surrogateescape")

    def press(self, data: bytes | str) -> str:
        self.caller.receive_data(data.encode() if isinstance(data, str) else data)
        return self.out()

    def wait(self, seconds: float) -> str:
        self.clock.advance(seconds)
        return self.out()


MAIN = "欢迎致电 10086,请输入1xxx,0转人工服务."


# --- Walking the default menu -----------------------------------------------------------


def test_the_default_menu_is_the_seeds_hotline_and_keys_walk_it() -> None:
    walk = Walk()
    assert MAIN in walk.out()
    assert "话费查询:" in walk.press("1\r\n")          # 1 then Enter ends the entry at once
    assert "余额为 58.20" in walk.press("1")           # single-digit node: the key alone
    said = walk.press("2")
    assert "本月账单" in said and "话费查询:" in said   # answer, then the same menu again
    assert MAIN in walk.press("*")                     # back
    assert "剩余 6.8GB" in walk.press("2")
    assert "业务办理:" in walk.press("3\n")
    assert MAIN in walk.press("9")                     # top (9 is no choice here)
    assert MAIN in walk.press("#")                     # repeat
    assert walk.caller.path == ["主菜单 1", "话费查询 1", "话费查询 2", "主菜单 2", "主菜单 3"]
    assert not walk.caller.close_expected()


def test_a_key_without_a_newline_that_could_grow_waits_for_the_digit_pause() -> None:
    walk = Walk()
    walk.out()
    assert walk.press("1") == ""                        # could be 1xxx: wait
    assert "话费查询:" in walk.wait(2.0)                 # the pause ends it: choice 1


def test_exit_hangs_up_with_goodbye() -> None:
    walk = Walk()
    walk.out()
    assert "感谢您的来电" in walk.press("exit\n")
    assert walk.caller.close_expected()


def test_the_english_example_menu_loads_and_walks() -> None:
    walk = Walk(packaged_menu(EXAMPLE_MENU))
    assert "Welcome to Example Telecom" in walk.out()
    assert "Billing:" in walk.press("1#")
    assert "Your balance is 58.20." in walk.press("1")


# --- Multi-digit entry ------------------------------------------------------------------


def test_multi_digit_entry_ends_at_once_when_complete_or_with_hash_enter_or_pause() -> None:
    walk = Walk()
    walk.out()
    assert "业务代码是 1234" in walk.press("1234")      # 4 digits: no longer key, act now
    text = """
[menu]
start = "m"
[nodes.m]
prompt = "code?"
[nodes.m.choices]
"12" = { say = "twelve" }
"123" = { say = "one-two-three" }
"5xx" = { say = "five-{digits}" }
"""
    walk = Walk(text)
    walk.out()
    assert walk.press("12") == ""                       # 12 or 123: wait
    assert "twelve" in walk.press("#")
    assert walk.press("12") == ""
    assert "twelve" in walk.press("\r\n")
    assert walk.press("12") == ""
    assert "twelve" in walk.wait(2.0)
    assert "one-two-three" in walk.press("123")
    assert "five-507" in walk.press("5") + walk.press("07")
    said = walk.press("5" + "8#")                       # 58 is no key: invalid
    assert "not a choice" in said


# --- Bad keys, failure limit; timeouts -----------------------------------------------------


def test_bad_keys_re_prompt_then_the_failure_limit_hangs_up() -> None:
    walk = Walk()
    walk.out()
    said = walk.press("7")
    assert "输入有误" in said and MAIN in said
    assert "输入有误" in walk.press("hello\n")          # a word is no key either
    said = walk.press("8")
    assert "输入错误次数过多" in said
    assert walk.caller.close_expected()


def test_a_valid_key_resets_the_failure_count() -> None:
    walk = Walk()
    walk.out()
    walk.press("7")
    walk.press("7")
    walk.press("2")          # valid
    walk.press("7")
    walk.press("7")
    assert not walk.caller.close_expected()


def test_timeout_re_prompts_then_hangs_up_at_the_limit() -> None:
    walk = Walk()
    walk.out()
    assert walk.wait(4.9) == ""
    said = walk.wait(0.1)
    assert "您没有按键" in said and MAIN in said
    assert not walk.caller.close_expected()
    said = walk.wait(5.0)
    assert "您没有按键" in said and "感谢您的来电" in said
    assert walk.caller.close_expected()


def test_a_key_restarts_the_timeout() -> None:
    walk = Walk()
    walk.out()
    walk.wait(4.0)
    walk.press("2")
    assert walk.wait(4.0) == ""
    assert "您没有按键" in walk.wait(1.0)


# --- Telnet and terminals ------------------------------------------------------------------

DO_ECHO, WILL_SGA, DO_NAWS = b"\xff\xfd\x01", b"\xff\xfb\x03", b"\xff\xfd\x1f"
SUBNEG = b"\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0"


def test_telnet_requests_are_refused_once_and_never_reach_the_menu() -> None:
    walk = Walk()
    walk.out()
    said = walk.press(DO_ECHO + WILL_SGA + DO_NAWS + SUBNEG + b"\xff\xf1" + b"1\r\x00")
    raw = said.encode("utf-8", "surrogateescape")
    assert raw.startswith(b"\xff\xfc\x01\xff\xfe\x03\xff\xfc\x1f")
    assert "话费查询:" in said and "输入有误" not in said
    assert b"\xff" not in raw[9:]
    again = walk.press(DO_ECHO + b"\xff\xfe\x01" + b"\xff\xfc\x03")    # DO again, DONT, WONT
    assert again == ""                                                 # no loop, no echo


def test_telnet_filter_gives_the_same_result_for_any_split() -> None:
    stream = b"ab" + DO_ECHO + b"c\xff\xffd" + SUBNEG + WILL_SGA + b"e"
    for chunks in split_at_every_byte(stream):
        telnet = TelnetFilter()
        results = [telnet.feed(chunk) for chunk in chunks]
        assert b"".join(r[0] for r in results) == b"abc\xffde"
        assert b"".join(r[1] for r in results) == b"\xff\xfc\x01\xff\xfe\x03"


def test_keys_words_and_line_endings_from_nc_telnet_and_the_seed_client() -> None:
    keys = CallerInput(100)
    keys.feed(b"1\r\n2\n3\r\x004exit\r\n\x1b[A5")
    events = []
    while (event := keys.next_event()) is not None:
        events.append(event)
    assert events == [Key("1"), Enter(), Key("2"), Enter(), Key("3"), Enter(), Key("4"),
                      Word("exit"), Key("5")]
    lines = CallerInput(100)
    lines.lines = True
    lines.feed("你好 hello\r\nbye\n".encode())
    assert [lines.next_event(), lines.next_event(), lines.next_event()] == [
        Line("你好 hello"), Line("bye"), None]


def test_a_big_read_costs_time_in_proportion_to_its_size() -> None:
    """One read can be 256 KiB: taking bytes off the front one at a time (quadratic)
    held the event loop, and every other client, for seconds; now it is linear."""
    import time

    caller_input = CallerInput(100)
    caller_input.lines = True
    caller_input.feed(b"x" * (1 << 20) + b"\nbye\n")
    started = time.process_time()
    events = []
    while (event := caller_input.next_event()) is not None:
        events.append(event)
    assert time.process_time() - started < 5  # ~0.5 s linear; ~12 s quadratic at idle
    assert events[-1] == Line("bye") and "line too long" in str(events[0])
    caller_input.feed(b"again\n")  # resumes after what it has read
    assert caller_input.next_event() == Line("again")


def test_overlong_and_invalid_utf8_input_is_refused_without_hanging_up() -> None:
    walk = Walk()
    walk.caller.input.max_line = 10
    walk.out()
    said = walk.press("x" * 50 + "\n")
    assert "line too long" in said
    said = walk.press(b"ab\xc3(\n")
    assert "not valid UTF-8" in said
    assert not walk.caller.close_expected()


# --- Menu files: each kind of error names its line ----------------------------------------

GOOD = """\
[menu]
start = "main"

[nodes.main]
prompt = "hello"

[nodes.main.choices]
"1" = { goto = "other" }
"0" = { operator = true }

[nodes.other]
prompt = "other"
"""


@pytest.mark.parametrize(("text", "line", "words"), [
    ("[menu]\nstart = \"main\"\n[nodes.main\nprompt = 1\n", 3, "not valid TOML"),
    (GOOD.replace('start = "main"', 'start = "nowhere"'), 2, "start node 'nowhere'"),
    (GOOD.replace('"1" = { goto = "other" }', '"1" = { goto = "missing" }'), 8,
     "goes to 'missing'"),
    (GOOD.replace('"1" = { goto', '"1a" = { goto'), 8, "must be digits"),
    (GOOD.replace('"1" = { goto', '"*" = { goto'), 8, "reserved"),
    (GOOD.replace('{ operator = true }', '{ operator = true, hangup = true }'), 9,
     "two things at once"),
    (GOOD.replace('{ operator = true }', '{ }'), 9, "does nothing"),
    (GOOD.replace('{ operator = true }', '{ colour = "red" }'), 9, "unknown key 'colour'"),
    (GOOD.replace('prompt = "other"', 'promt = "other"'), 12, "unknown key 'promt'"),
    (GOOD.replace('prompt = "hello"', 'prompt = 5'), 5, "needs a prompt"),
    (GOOD + '\n[texts]\nhello = "hi"\n', 15, "unknown text 'hello'"),
    (GOOD.replace("[menu]\nstart = \"main\"\n", "[menu]\n"), 1, "needs start"),
    (GOOD.replace("[menu]\nstart = \"main\"\n", ""), 0, "no [menu] table"),
    ("[menu]\nstart = \"main\"\n", 0, "no nodes"),
    (GOOD + '\n[extra]\nx = 1\n', 14, "unknown table or key 'extra'"),
])
def test_each_kind_of_menu_error_names_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(MenuError) as caught:
        parse_menu(text, "menu.toml")
    assert caught.value.line == line, caught.value
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"menu.toml:{line}: " if line else "menu.toml: ")


def test_a_menu_file_that_cannot_be_read_is_a_config_error(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    with pytest.raises(ConfigError, match="cannot read the menu"):
        load_menu(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('goto = "other"', 'goto = "gone"'))
    with pytest.raises(ConfigError, match=r"bad\.toml:8: choice '1' of node 'main' goes to"):
        load_menu(bad)
