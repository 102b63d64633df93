"""One line per command for ``sockhub --help``, known without building its parser.

``main`` builds in full only the parser of the command being run (``serve``'s
needs the whole service registry, which costs a client command a third of a
second to import); the others are listed with these lines alone.
"""

SUMMARIES: dict[str, str] = {
    "serve": "run one service, several (--config), or the default set",
    "connect": "netcat-like client: stdin to the socket, the socket to stdout",
    "ping": "round-trip times to an echo service, like ping",
    "chat": "terminal chat client for the chat hub",
    "bench": "load generators (bench echo, bench chat)",
    "exec": "run a command on a sockhub exec server, with its exit status",
    "passwd": "print a password hash for an operator account",
    "send": "send a file or a tree to a files server, verified and resumable",
    "get": "fetch a file or a tree from a files server, verified and resumable",
    "ls": "list a directory on a files server",
    "rm": "remove files on a files server",
}
