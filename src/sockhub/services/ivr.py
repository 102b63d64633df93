"""The hotline's wiring: its menu file, its timers, and ``sockhub serve ivr``.

The hotline is a door of the chat hub (``doors/hotline.py``), because its
callers talk with operators on the hub's other doors; so ``sockhub serve
ivr`` runs the chat service with the hotline as its primary door (on
``--port``, 10086 by default) and the line door for operators beside it
(``--line-port``, 9999 by default), and ``sockhub serve chat --ivr-port N``
adds the hotline to a chat hub.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sockhub.errors import ConfigError
from sockhub.protocols.ivr import CallerSettings, Menu, MenuError, parse_menu

if TYPE_CHECKING:
    from sockhub.services.chat_settings import ChatSettings

#: The packaged menus: the seed's 10086 hotline (the default) and an English example.
DEFAULT_MENU = "10086.toml"
EXAMPLE_MENU = "example-en.toml"
#: The operators' line door of ``sockhub serve ivr`` when --line-port is not given.
LINE_PORT = 9999


def packaged_menu(name: str = DEFAULT_MENU) -> str:
    """The text of a menu shipped with sockhub."""
    return resources.files("sockhub.services").joinpath("ivr_menus", name).read_text("utf-8")


def load_menu(path: Path | None) -> Menu:
    """The menu in ``path``, or the packaged 10086 menu; checked.

    Raises:
        ConfigError: the file cannot be read, or a problem in it (with its line).
    """
    if path is None:
        text, source = packaged_menu(), f"(built-in) {DEFAULT_MENU}"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise ConfigError(f"ivr: cannot read the menu {path}: {reason}") from exc
        source = str(path)
    try:
        return parse_menu(text, source)
    except MenuError as exc:
        raise ConfigError(f"ivr: bad menu: {exc}") from exc


def caller_settings(settings: ChatSettings) -> CallerSettings:
    return CallerSettings(timeout=settings.ivr_timeout, digit_timeout=settings.ivr_digit_timeout,
                          max_timeouts=settings.ivr_max_timeouts,
                          max_failures=settings.ivr_max_failures)
