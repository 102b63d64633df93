"""Choose the event loop: uvloop when installed (``--loop auto``), else asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from sockhub.errors import ConfigError

T = TypeVar("T")
LoopName = Literal["auto", "asyncio", "uvloop"]
LOOP_NAMES: tuple[LoopName, ...] = ("auto", "asyncio", "uvloop")


def loop_factory(name: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``asyncio.Runner``; ``None`` means asyncio's default.

    Raises:
        ConfigError: ``uvloop`` asked for but not installed, or an unknown name.
    """
    if name == "asyncio":
        return None
    if name not in LOOP_NAMES:
        raise ConfigError(f"unknown loop {name!r}; choose from {', '.join(LOOP_NAMES)}")
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise ConfigError(
                "uvloop is not installed: pip install 'sockhub[uvloop]'"
            ) from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], loop: str = "auto") -> T:
    """Run ``main`` to completion on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)


def loop_label(loop: asyncio.AbstractEventLoop) -> str:
    module = type(loop).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
