"""The web door: the chat page over HTTP, and the chat over one WebSocket at ``/ws``.

``door.py`` is one connection (h11 for HTTP, websockets' sans-I/O
``ServerProtocol`` for the WebSocket); ``http.py`` is the route table and
the page's files (``static/``); ``chat_json.py`` is the JSON chat
protocol v1; ``session.py`` the page's login and its session cookie.
IRC clients on the same WebSocket (``text.ircv3.net``, ``binary.ircv3.net``)
are served by the IRC door, hosted inside.
docs/web-protocol.md is the contract.
"""

from sockhub.doors.web.door import WebDoor, web_refusal

__all__ = ["WebDoor", "web_refusal"]
