"""Hotline menus: the model, and a TOML loader that names the line of each problem.

A menu file (docs/hotline.md) is a ``[menu]`` table (``start``, optional
``title``), an optional ``[texts]`` table (the words the hotline says
around the menu, for a language other than English), and one
``[nodes.NAME]`` table per menu node: a ``prompt`` and a ``choices``
table of key → action. Keys are digits; a key longer than one digit is a
multi-digit entry, and ``x`` in a key stands for any digit (``"1xxx"``: a
4-digit service code starting with 1). ``*`` (back), ``#`` (repeat) and
``9`` (top, unless the node uses it) are the hotline's own keys, as on
phone menus (FreeSWITCH ``ivr.conf`` is the model).

An action is a table with one or more of ``say`` (answer text; ``{digits}``
is what was keyed), then at most one of ``goto`` (a node), ``operator =
true`` (hand-off to a human) or ``hangup = true``. With only ``say``, the
caller hears the answer and then the same menu again.

Nothing here reads a file or a clock: :func:`parse_menu` takes the text.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

#: The words the hotline says besides the prompts, with their English defaults.
#: ``{place}``, ``{nick}``, ``{path}`` are filled in where they appear.
DEFAULT_TEXTS: dict[str, str] = {
    "invalid": "Sorry, that is not a choice here.",
    "timeout": "We did not hear a key.",
    "goodbye": "Thank you for calling. Goodbye.",
    "too_many": "Too many attempts. Goodbye.",
    "keys": "(* back, # repeat, 9 main menu)",
    "connecting": "Please hold: connecting you to an operator.",
    "place": "You are number {place} in the queue. Press * and Enter to go back to the menu.",
    "no_operator": ("No operator is available right now. Stay on the line to wait, "
                    "or press * and Enter to go back to the menu."),
    "connected": "You are connected. Type your message and press Enter; /quit hangs up.",
    "operator_joined": "Operator {nick} has joined.",
    "call_ended": "The operator ended the call.",
    "back": "Back to the menu.",
}

#: A choice key: digits, ``x`` for any digit.
_KEY = re.compile(r"[0-9x]+")
_ACTION_KEYS = ("say", "goto", "operator", "hangup")
_NODE_KEYS = ("prompt", "choices", "title")


class MenuError(ValueError):
    """A menu file's problem, with the line it is on (1-based; 0: the file as a whole)."""

    def __init__(self, problem: str, line: int = 0, source: str = "menu") -> None:
        self.problem, self.line, self.source = problem, line, source
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Action:
    """What a choice does: say something, then go to a node, hand off, hang up or stay."""

    say: str | None = None
    goto: str | None = None
    operator: bool = False
    hangup: bool = False


@dataclass(frozen=True)
class Node:
    """One menu: its prompt and its choices by key (``x`` in a key: any digit)."""

    name: str
    prompt: str
    choices: dict[str, Action]
    title: str = ""

    @property
    def multi_digit(self) -> bool:
        """True when some key is longer than one digit: entries end with #, Enter or a pause."""
        return any(len(key) > 1 for key in self.choices)

    def match(self, digits: str) -> Action | None:
        """The action for a complete entry; an exact key beats a pattern."""
        if digits in self.choices:
            return self.choices[digits]
        for key, action in self.choices.items():
            if len(key) == len(digits) and _fits(digits, key):
                return action
        return None

    def may_grow(self, digits: str) -> bool:
        """True if some longer key starts with ``digits``: more digits may come."""
        return any(len(key) > len(digits) and _fits(digits, key[:len(digits)])
                   for key in self.choices)

    def label(self) -> str:
        return self.title or self.name


def _fits(digits: str, key: str) -> bool:
    return all(k in ("x", d) for d, k in zip(digits, key, strict=True))


@dataclass(frozen=True)
class Menu:
    """A whole hotline menu: its nodes, where it starts, and its words."""

    start: str
    nodes: dict[str, Node]
    texts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TEXTS))
    title: str = ""

    def node(self, name: str) -> Node:
        return self.nodes[name]


def parse_menu(text: str, source: str = "menu") -> Menu:
    """Check and build a menu from TOML text.

    Raises:
        MenuError: the first problem found, with its line.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(match.group(1)) if match else 0
        problem = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise MenuError(f"not valid TOML: {problem}", line, source) from None
    lines = _Lines(text)

    def fail(problem: str, table: str, key: str | None = None) -> MenuError:
        return MenuError(problem, lines.find(table, key), source)

    unknown = sorted(set(data) - {"menu", "texts", "nodes"})
    if unknown:
        raise fail(f"unknown table or key {unknown[0]!r} (expected [menu], [texts], "
                   "[nodes.NAME])", "", unknown[0])
    menu = data.get("menu")
    if not isinstance(menu, dict):
        raise MenuError("no [menu] table (it names the start node: start = \"main\")", 0, source)
    for key in menu:
        if key not in ("start", "title"):
            raise fail(f"unknown key {key!r} in [menu] (expected start, title)", "menu", key)
    start = menu.get("start")
    if not isinstance(start, str):
        raise fail("[menu] needs start = \"NODE\", the node callers hear first", "menu", "start")
    texts = dict(DEFAULT_TEXTS)
    given = data.get("texts", {})
    if not isinstance(given, dict):
        raise fail("texts must be a table", "", "texts")
    for key, value in given.items():
        if key not in DEFAULT_TEXTS:
            raise fail(f"unknown text {key!r} (known: {', '.join(DEFAULT_TEXTS)})", "texts", key)
        if not isinstance(value, str):
            raise fail(f"text {key!r} must be a string", "texts", key)
        texts[key] = value
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        raise MenuError("no nodes: add at least one [nodes.NAME] table", 0, source)
    nodes = {name: _node(name, raw, fail) for name, raw in raw_nodes.items()}
    if start not in nodes:
        raise fail(f"start node {start!r} is not defined (nodes: {', '.join(nodes)})",
                   "menu", "start")
    for node in nodes.values():
        for key, action in node.choices.items():
            if action.goto is not None and action.goto not in nodes:
                raise fail(f"choice {key!r} of node {node.name!r} goes to {action.goto!r}, "
                           "which is not defined", f"nodes.{node.name}.choices", key)
    title = menu.get("title", "")
    if not isinstance(title, str):
        raise fail("[menu] title must be a string", "menu", "title")
    return Menu(start=start, nodes=nodes, texts=texts, title=title)


def _node(name: str, raw: Any, fail: Any) -> Node:
    table = f"nodes.{name}"
    if not isinstance(raw, dict):
        raise fail(f"node {name!r} must be a table [nodes.{name}]", "nodes", name)
    for key in raw:
        if key not in _NODE_KEYS:
            raise fail(f"unknown key {key!r} in node {name!r} (expected prompt, choices, title)",
                       table, key)
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise fail(f"node {name!r} needs a prompt = \"...\"", table, "prompt")
    title = raw.get("title", "")
    if not isinstance(title, str):
        raise fail(f"title of node {name!r} must be a string", table, "title")
    choices_raw = raw.get("choices", {})
    if not isinstance(choices_raw, dict):
        raise fail(f"choices of node {name!r} must be a table", table, "choices")
    where = f"{table}.choices"
    choices: dict[str, Action] = {}
    for key, spec in choices_raw.items():
        if key in ("*", "#"):
            raise fail(f"key {key!r} in node {name!r} is reserved ({'*'} back, # repeat)",
                       where, key)
        if not _KEY.fullmatch(key):
            raise fail(f"key {key!r} in node {name!r} must be digits (x: any digit)", where, key)
        choices[key] = _action(name, key, spec, fail, where)
    return Node(name=name, prompt=prompt, choices=choices, title=title)


def _action(node: str, key: str, spec: Any, fail: Any, where: str) -> Action:
    what = f"choice {key!r} of node {node!r}"
    if isinstance(spec, str):  # a plain string is the node to go to
        spec = {"goto": spec}
    if not isinstance(spec, dict):
        raise fail(f"{what} must be a node name or a table like {{ say = \"...\" }}", where, key)
    for k in spec:
        if k not in _ACTION_KEYS:
            raise fail(f"{what} has an unknown key {k!r} (expected say, goto, operator, "
                       "hangup)", where, key)
    say, goto = spec.get("say"), spec.get("goto")
    operator, hangup = spec.get("operator", False), spec.get("hangup", False)
    if say is not None and not isinstance(say, str):
        raise fail(f"{what}: say must be a string", where, key)
    if goto is not None and not isinstance(goto, str):
        raise fail(f"{what}: goto must be a node name", where, key)
    if not isinstance(operator, bool) or not isinstance(hangup, bool):
        raise fail(f"{what}: operator and hangup are true or false", where, key)
    ends = [name for name, on in (("goto", goto is not None), ("operator", operator),
                                  ("hangup", hangup)) if on]
    if len(ends) > 1:
        raise fail(f"{what} does two things at once: {' and '.join(ends)}", where, key)
    if not ends and say is None:
        raise fail(f"{what} does nothing: give say, goto, operator or hangup", where, key)
    return Action(say=say, goto=goto, operator=operator, hangup=hangup)


class _Lines:
    """Where a table or key was written, found by scanning the source (tomllib gives no lines)."""

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str]] = []
        for number, line in enumerate(self.lines, 1):
            match = self._HEADER.match(line)
            if match:
                self.headers.append((number, _unquote(match.group(1))))

    def find(self, table: str, key: str | None = None) -> int:
        """The line of ``key`` in ``table`` (``""``: top level), else of the table's header."""
        if key is not None:  # written as a table of its own: [table.key] or [table.key.sub]
            full = f"{table}.{key}" if table else key
            for number, name in self.headers:
                if name == full or name.startswith(full + "."):
                    return number
        start, end = 0, len(self.lines)
        header = 0
        if table:
            found = [n for n, name in self.headers if name == table]
            if not found:  # written inline or as a dotted key: fall back on the parent
                parent, _, leaf = table.rpartition(".")
                if key is None:
                    return self.find(parent, leaf) if leaf else 0
                line = self.find(parent, leaf)
                start = max(line - 1, 0)
            else:
                header = start = found[0]
            following = [n for n, _ in self.headers if n > start]
            end = following[0] - 1 if following else len(self.lines)
        else:
            end = self.headers[0][0] - 1 if self.headers else len(self.lines)
        if key is not None:
            pattern = re.compile(r'^\s*(?:"' + re.escape(key) + r'"|\'' + re.escape(key)
                                 + r"'|" + re.escape(key) + r")\s*[=.]")
            inline = re.compile(r'[{,]\s*(?:"' + re.escape(key) + r'"|' + re.escape(key)
                                + r")\s*=")
            for number in range(start + 1, end + 1):
                text = self.lines[number - 1]
                if pattern.match(text) or inline.search(text):
                    return number
            if table and not header:
                return start + 1 if start < len(self.lines) else 0
        return header


def _unquote(dotted: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in dotted.split("."))
