"""Every default that `sockhub serve --help`, the README and docs/ show is the one the code uses.

The expected values come from the code (the Limits dataclass, each service's
overrides as the engine resolves them, the settings dataclasses), so a
default changed in one place and not the other fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from net import LineClient, open_client
from sockhub.cli import build_parser, main
from sockhub.config import ServiceConfig
from sockhub.hub.hub import MESSAGE_MAX
from sockhub.limits import Limits, limit_fields
from sockhub.services.chat import ChatSettings
from sockhub.services.exec import ExecSettings
from sockhub.services.registry import SERVICES

ROOT = Path(__file__).resolve().parents[2]
OVERRIDING = [name for name, spec in SERVICES.items() if spec.limits]


def used(service: str, limit: str) -> object:
    """The value a service really runs with when the limit is not set."""
    spec = SERVICES[service]
    return getattr(ServiceConfig(service=service).resolved_limits(spec.limits), limit)


def number(text: str) -> float | None:
    """``10,000`` / ``64 KiB`` / ``300 s`` / ``none`` → a number (None for off)."""
    text = text.strip().replace(",", "")
    if text == "none":
        return None
    match = re.fullmatch(r"([\d.]+)\s*(KiB|MiB|s|bytes)?", text)
    assert match, f"not a value: {text!r}"
    scale = {"KiB": 1024, "MiB": 1024 * 1024}.get(match.group(2) or "", 1)
    return float(match.group(1)) * scale


def serve_help(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Each option of ``serve --help`` → its help text, on one line."""
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    helps: dict[str, str] = {}
    flag = None
    for line in out.splitlines():
        match = re.match(r"  (--[\w-]+)(?: \S+)?(?:\s{2,}(.*))?$", line)
        if match:
            flag = match.group(1)
            helps[flag] = match.group(2) or ""
        elif flag and line.startswith(" " * 10):
            helps[flag] += " " + line.strip()
        else:
            flag = None
    return helps


def test_every_limit_help_shows_the_default_each_service_runs_with(capsys):
    helps = serve_help(capsys)
    for f in limit_fields():
        flag = "--" + f.name.replace("_", "-")
        shown = re.search(r"\(\w+; (default [^)]*)\)$", helps[flag])
        assert shown, helps[flag]
        values = dict(part.split(" ", 1) for part in shown.group(1).split("; "))
        assert number(values.pop("default")) == getattr(Limits(), f.name), flag
        for service in SERVICES:
            value = values.pop(service, None)
            expected = used(service, f.name)
            if value is None:  # not shown: the engine's default must be what it uses
                assert expected == getattr(Limits(), f.name), f"{flag}: {service} not shown"
            else:
                assert number(value) == expected, f"{flag}: {service}"
        assert not values, f"{flag} shows an unknown service: {values}"


def test_the_readme_limit_table_shows_the_default_each_service_runs_with():
    readme = (ROOT / "README.md").read_text()
    header = next(line for line in readme.splitlines() if line.startswith("| limit |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:2] == ["limit", "default"] and set(OVERRIDING) <= set(columns)
    rows = {}
    for line in readme.splitlines():
        match = re.match(r"\| `(--[\w-]+)` \|", line)
        if match:
            rows[match.group(1)] = [c.strip() for c in line.strip("|").split("|")]
    for f in limit_fields():
        flag = "--" + f.name.replace("_", "-")
        assert flag in rows, f"README's limit table has no row for {flag}"
        cells = dict(zip(columns, rows[flag], strict=True))
        assert number(cells["default"]) == getattr(Limits(), f.name), flag
        for service in SERVICES:
            shown = cells.get(service, "")
            expected = used(service, f.name)
            assert (number(shown) if shown else getattr(Limits(), f.name)) == expected, (
                f"README {flag}: {service}")


def _shown_default(help_text: str) -> str:
    match = re.search(r"\(?default (\S+?)[;),]", help_text)
    assert match, help_text
    return match.group(1)


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--history", ChatSettings.__dataclass_fields__["history"].default),
        ("--flood-rate", ChatSettings.__dataclass_fields__["flood_rate"].default),
        ("--flood-burst", ChatSettings.__dataclass_fields__["flood_burst"].default),
        ("--protected-room", ChatSettings.__dataclass_fields__["protected_rooms"].default[0]),
        ("--timeout", ExecSettings.__dataclass_fields__["timeout"].default),
        ("--max-output", ExecSettings.__dataclass_fields__["max_output"].default),
        ("--max-concurrent", ExecSettings.__dataclass_fields__["max_concurrent"].default),
        ("--host", ServiceConfig.__dataclass_fields__["hosts"].default[0]),
    ],
)
def test_service_option_help_shows_the_settings_default(flag, expected, capsys):
    shown = _shown_default(serve_help(capsys)[flag])
    if isinstance(expected, int | float):
        assert float(shown) == expected
    else:
        assert shown == expected


def test_process_option_help_shows_the_parser_default(capsys):
    parsed = build_parser().parse_args(["serve"])
    assert _shown_default(serve_help(capsys)["--log-level"] + ";") == parsed.log_level


def test_the_readme_chat_options_show_the_settings_defaults():
    readme = " ".join((ROOT / "README.md").read_text().split())
    fields = ChatSettings.__dataclass_fields__
    assert f"`--history N` (messages replayed on join, default {fields['history'].default})" \
        in readme
    assert (f"default {fields['flood_rate'].default:g} lines/s with bursts of "
            f"{fields['flood_burst'].default}") in readme
    assert f"default `{fields['protected_rooms'].default[0]}`" in readme


def test_the_chat_docs_state_the_line_and_message_caps_the_code_uses():
    chat_max_line = f"{used('chat', 'max_line'):,}"
    cap = f"{MESSAGE_MAX:,} characters"
    docs = {name: " ".join((ROOT / "docs" / name).read_text().split())
            for name in ("chat-line.md", "irc.md", "framing.md", "chat-client.md")}
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"{chat_max_line} by default for chat" in docs["chat-line.md"]
    assert f"{chat_max_line} bytes by default for chat" in docs["chat-line.md"]
    assert f"at most {cap}" in docs["chat-line.md"]
    assert f"error: a message is at most {MESSAGE_MAX} characters" in docs["chat-line.md"]
    assert f"at most {cap} from any door" in docs["irc.md"]
    assert f"capped at {cap}" in readme
    assert (f"default {Limits().max_line:,}, {chat_max_line} for the chat door"
            in docs["framing.md"])
    assert f"Lines over {chat_max_line} bytes (the chat door's default" in docs["chat-client.md"]


async def test_a_message_over_the_cap_is_refused_as_documented(serve, tmp_path):
    chat = await serve("chat", options={"data_dir": str(tmp_path)})
    user = LineClient(*await open_client(chat.ports[0]))
    await user.send("alice")
    await user.expect("you are alice")
    await user.send("é" * (MESSAGE_MAX + 1))  # 8,002 bytes: within --max-line
    assert await user.expect("error:") == (
        f"error: a message is at most {MESSAGE_MAX} characters")
    await user.send("é" * MESSAGE_MAX)
    assert (await user.expect("<alice>")).endswith("é" * MESSAGE_MAX)
    user.close()


def test_the_default_ports_shown_are_the_registry_ones():
    from sockhub.cli.serve import EPILOG_SERVE

    readme = (ROOT / "README.md").read_text()
    family = (ROOT / "docs" / "echo-family.md").read_text()
    for name, spec in SERVICES.items():
        suffix = "/udp" if spec.datagram else ""
        port = f"{spec.default_port}{suffix}"
        assert re.search(rf"^  {re.escape(name)} .*\(port {port}\)$", EPILOG_SERVE, re.M), name
        assert re.search(rf"^\| `sockhub serve {re.escape(name)}` \|.*\| {port} \|$", readme,
                         re.M), name
        if name in ("echo", "upper", "hello", "udp-echo"):
            assert f"| `{name}` | {spec.default_port} |" in family, name
