"""The chat hub's front doors: each turns one protocol's events into chat-service calls.

A door is a sockhub ``Protocol`` the engine drives and a hub ``Member``
the hub delivers events to; it asks the chat service only what
:class:`~sockhub.doors.api.ChatApi` offers. A new door (web, IRC over
WebSocket, the hotline) is a new module here plus one listener row in
``services/chat.py`` (docs/architecture.md).
"""
