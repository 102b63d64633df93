"""Tab completion, sans-I/O: commands, and the nicks and rooms each argument takes.

:func:`complete` is pure (the state and the text before the cursor in,
replacements out); :class:`ChatCompleter` is prompt_toolkit's side of it.
A module of its own because the table of argument kinds is the one place
that knows the shape of each command for completion.
"""

from __future__ import annotations

from collections.abc import Iterable

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from sockhub.client.chat.state import ChatState
from sockhub.hub.names import fold
from sockhub.protocols.chat_line import COMMANDS

# What each command's arguments are, for completion: "nick" (members of the
# room in question), "anyone" (every nick seen), "room" (every room known),
# "myroom" (rooms we are in), "command". "myroom|nick" is a room if the word
# starts with '#', else a nick, and the next argument is a nick only if a
# room came first (/kick [#ROOM] NICK [REASON]).
_ARG_KINDS: dict[str, tuple[str, ...]] = {
    "msg": ("anyone",),
    "join": ("room",),
    "part": ("myroom",),
    "who": ("room",),
    "topic": ("myroom",),
    "bans": ("room",),
    "help": ("command",),
    "kick": ("myroom|nick", "nick"),
    "ban": ("myroom|anyone", "anyone"),
    "unban": ("myroom|anyone", "anyone"),
}


def complete(state: ChatState, before_cursor: str) -> list[tuple[str, int]]:
    """Completions of the word before the cursor: ``(replacement, start offset)`` pairs.

    The start offset is negative, as prompt_toolkit's ``Completion`` wants.
    """
    words = before_cursor.split(" ")
    word, head = words[-1], words[0]
    if not head.startswith("/") or head.startswith("//"):  # a message: nicks in the room
        return _matching(state.nicks(state.current), word, ": " if len(words) == 1 else " ")
    if len(words) == 1:
        return [(f"/{name} ", -len(word)) for name in COMMANDS
                if f"/{name}".startswith(word.lower())]
    kinds = _ARG_KINDS.get(head[1:].lower(), ())
    index, room = len(words) - 2, state.current
    if kinds and "|" in kinds[0]:
        if index == 0:
            room_kind, nick_kind = kinds[0].split("|")
            kinds = (room_kind if word.startswith("#") else nick_kind,)
        elif words[1].startswith("#"):
            room = words[1]
        else:
            return []  # /kick NICK REASON: the reason is free text
    if index >= len(kinds):
        return []
    kind = kinds[index]
    if kind in ("nick", "anyone"):
        return _matching(state.nicks(room if kind == "nick" else None), word, " ")
    if kind in ("room", "myroom"):
        return _matching(state.room_names(mine=kind == "myroom"), word, " ")
    return _matching(COMMANDS, word.lstrip("/"), " ", offset=len(word))  # a command name


def _matching(
    names: Iterable[str], word: str, suffix: str, offset: int | None = None
) -> list[tuple[str, int]]:
    start = -(len(word) if offset is None else offset)
    return [(name + suffix, start) for name in names if fold(name).startswith(fold(word))]


class ChatCompleter(Completer):
    """prompt_toolkit's side of :func:`complete`."""

    def __init__(self, state: ChatState) -> None:
        self.state = state

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        for text, start in complete(self.state, document.text_before_cursor):
            spec = COMMANDS.get(text.strip().lstrip("/")) if text.startswith("/") else None
            meta = spec.summary if spec else None
            yield Completion(text, start, display=text.strip(), display_meta=meta)
