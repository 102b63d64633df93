"""sockhub.options: one declaration per option, and the flags, checks and docs made from it.

A toy settings class stands in for a service's; nothing here opens a socket.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from sockhub import options
from sockhub.errors import ConfigError
from sockhub.options import option, settle


def _upper(name: str, value: str) -> str:
    if not value.isalpha():
        raise ValueError(f"{name} must be letters, not {value!r}")
    return value.upper()


@dataclass(frozen=True, kw_only=True)
class Toy:
    size: int = option(16, "bytes per thing", unit="bytes", minimum=1, maximum=4096)
    wait: float | None = option(2.5, "time to wait", unit="seconds", off=True)
    name: str | None = option(None, "what to call it", check=_upper, default_text="the host's")
    tags: tuple[str, ...] = option(("a",), "a tag", flag="--tag", metavar="TAG")
    env: dict[str, str] = option(factory=dict, help="a variable", metavar="KEY=VALUE")
    where: Path | None = option(None, "a place", metavar="DIR")
    loud: bool = option(False, "shout")
    secret: str | None = option(None, "a password", secret=True)
    hidden: int = option(3, "a file-only key", minimum=0, cli=False)

    def __post_init__(self) -> None:
        settle(self)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    options.add_arguments(p, Toy, prefix="toy.")
    return p


def given(*argv: str) -> dict[str, object]:
    return options.given(parser().parse_args(list(argv)), Toy, prefix="toy.")


def helps() -> dict[str, str]:
    return {a.option_strings[0]: a.help or "" for a in parser()._actions if a.option_strings}


# --- The command line ----------------------------------------------------------------


def test_each_help_ends_with_the_default_the_field_declares():
    shown = helps()
    assert shown["--size"] == "bytes per thing (bytes; default 16)"
    assert shown["--wait"] == "time to wait (seconds; default 2.5; none = off)"
    assert shown["--name"] == "what to call it (default: the host's)"
    assert shown["--tag"] == "a tag (default a; repeatable)"
    assert shown["--env"] == "a variable (repeatable)"
    assert shown["--loud"] == "shout"


def test_the_help_follows_a_changed_default():
    @dataclass(frozen=True, kw_only=True)
    class Other:
        size: int = option(32, "bytes per thing", unit="bytes", minimum=1)

    p = argparse.ArgumentParser()
    options.add_arguments(p, Other, prefix="", also={"size": ["chat 8"]})
    (action,) = [a for a in p._actions if a.dest == "size"]
    assert action.help == "bytes per thing (bytes; default 32; chat 8)"


def test_secrets_and_file_only_keys_stay_off_the_command_line_and_out_of_sight():
    shown = helps()
    assert "--hidden" not in shown
    assert shown["--secret"] == "a password"
    toy = Toy(secret="hunter2")
    assert "hunter2" not in repr(toy)
    assert "hunter2" not in options.markdown_table(Toy)


def test_only_what_was_given_is_returned_by_its_config_key():
    assert given() == {}
    assert given("--size", "64", "--wait", "none", "--tag", "x", "--tag", "y",
                 "--env", "A=1", "--env", "B=", "--loud", "--where", "/tmp") == {
        "size": 64, "wait": None, "tags": ["x", "y"], "env": {"A": "1", "B": ""},
        "loud": True, "where": "/tmp"}


def test_an_empty_text_for_an_option_without_a_default_is_not_given():
    assert given("--name", "") == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--size", "2.5"], "--size must be a whole number, not 2.5"),
        (["--env", "NOEQUALS"], "--env takes KEY=VALUE, not 'NOEQUALS'"),
    ],
)
def test_bad_command_line_values_are_config_errors_naming_the_flag(argv, message):
    with pytest.raises(ConfigError, match=message):
        given(*argv)


@pytest.mark.parametrize("argv", [["--size", "none"], ["--size", "-1"], ["--wait", "soon"]])
def test_values_that_are_not_numbers_stop_argparse(argv, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(argv)
    assert "argument --" in capsys.readouterr().err


# --- Building from a mapping ---------------------------------------------------------


def test_a_mapping_builds_a_checked_normalised_instance():
    toy = options.build(Toy, {"size": 64, "wait": "none", "name": "box", "tags": ["x"],
                              "env": ["A=1"], "where": "/tmp", "hidden": 0}, where="toy")
    assert toy == Toy(size=64, wait=None, name="BOX", tags=("x",), env={"A": "1"},
                      where=Path("/tmp"), hidden=0)
    assert isinstance(toy.tags, tuple) and isinstance(toy.where, Path)


def test_made_in_code_it_is_checked_the_same_way():
    assert Toy(tags=["x"]).tags == ("x",)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size must be 1-4096, not 0"):
        Toy(size=0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bogus": 1, "size": 2}, "toy.toml: unknown option\\(s\\): bogus"),
        ({"size": 5000}, "toy.toml: size must be 1-4096, not 5000"),
        ({"size": 1.5}, "toy.toml: size must be a whole number, not 1.5"),
        ({"size": True}, "toy.toml: size must be a whole number, not True"),
        ({"size": None}, "size must be a whole number, not None: size cannot be turned off"),
        ({"size": "none"}, "size must be a whole number, not 'none'"),
        ({"wait": 0}, "wait must be more than 0, not 0"),
        ({"wait": float("inf")}, "wait must be a finite number more than 0"),
        ({"name": "no spaces"}, "name must be letters"),
        ({"tags": "x"}, "tags must be a list of strings"),
        ({"env": {"A": 1}}, "env must be a table of strings"),
        ({"env": ["A"]}, "env takes NAME=VALUE"),
        ({"loud": "yes"}, "loud must be true or false"),
        ({"hidden": -1}, "hidden must be at least 0, not -1"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key_and_where(values, message):
    with pytest.raises(ConfigError, match=message):
        options.build(Toy, values, where="toy.toml")


def test_off_needs_a_type_that_can_hold_none():
    @dataclass(frozen=True)
    class Broken:
        size: int = option(1, "a size", off=True)

    with pytest.raises(TypeError, match="off=True"):
        options.declared(Broken)


# --- Docs -----------------------------------------------------------------------------


def test_the_docs_table_shows_every_key_with_its_flag_and_default():
    table = options.markdown_table(Toy, extra={"chat": {"size": 8192}}).splitlines()
    assert table[0] == "| key | command line | default | chat | meaning |"
    rows = {line.split(" | ")[0].strip("| `"): line for line in table[2:]}
    assert list(rows) == [f.name for f in dataclasses.fields(Toy)]
    assert rows["size"] == "| `size` | `--size BYTES` | 16 | 8 KiB | bytes per thing |"
    assert rows["wait"] == "| `wait` | `--wait S` | 2.5 s |  | time to wait; `none` turns it off |"
    assert rows["hidden"] == "| `hidden` | — | 3 |  | a file-only key |"
    assert rows["loud"] == "| `loud` | `--loud` | false |  | shout |"
    assert rows["name"].startswith("| `name` | `--name TEXT` | the host's |")
