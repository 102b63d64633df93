"""The IRC door's protocol, sans-I/O: the connection state machine and IRC's vocabulary.

``protocol.py`` is one connection (framing, flood clock, registration, the
command table's checks); ``vocabulary.py`` translates between the hub's
words and IRC's (capabilities, ISUPPORT, modes, rendering); ``errors.py``
maps the hub's refusals to numerics. The wire format itself is
``sockhub.codec.irc``; the door that calls the chat service is
``sockhub.doors.irc``.
"""
