"""Hub events as JSON, for the Redis bus: one flat object per event.

Every :data:`~sockhub.hub.events.HubEvent` is a frozen dataclass of plain
fields; an event travels as ``{"t": class name, field: value, ...}``. Tuples
(``meta``, ``changes``) come back as tuples, so a decoded event equals the
one encoded.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from sockhub.hub import events as ev
from sockhub.hub.events import HubEvent, ModeChange

_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (ev.Message, ev.Private, ev.Signal, ev.Joined, ev.Parted, ev.Quit,
                ev.NickChanged, ev.TopicChanged, ev.Kicked, ev.BanChanged, ev.ModeChanged,
                ev.AwayChanged, ev.Invited)
}


def encode(event: HubEvent) -> str:
    data: dict[str, Any] = {"t": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        if f.name == "changes":
            value = [[c.flag, c.on, c.arg] for c in value]
        data[f.name] = value
    return json.dumps(data, separators=(",", ":"))


def decode(text: str | bytes) -> HubEvent:
    """The event ``text`` encodes. Raises ValueError for anything else."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not an event")
    cls = _TYPES.get(data.pop("t", None))
    if cls is None:
        raise ValueError("unknown event type")
    if "meta" in data:
        data["meta"] = tuple((str(k), str(v)) for k, v in data["meta"])
    if "changes" in data:
        data["changes"] = tuple(ModeChange(str(f), bool(on), arg) for f, on, arg in data["changes"])
    try:
        event: HubEvent = cls(**data)
    except TypeError as exc:
        raise ValueError(f"bad event fields: {exc}") from exc
    return event
