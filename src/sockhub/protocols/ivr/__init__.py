"""The hotline: menus from TOML, a caller's keys through telnet, the menu walk (sans-I/O)."""

from sockhub.protocols.ivr.caller import CallerProtocol, CallerSettings
from sockhub.protocols.ivr.menu import DEFAULT_TEXTS, Action, Menu, MenuError, Node, parse_menu

__all__ = ["DEFAULT_TEXTS", "Action", "CallerProtocol", "CallerSettings", "Menu", "MenuError",
           "Node", "parse_menu"]
