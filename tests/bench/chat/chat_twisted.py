#!/usr/bin/python3
"""The chat of examples/chat-server written on Twisted, for the fan-out benchmark.

usage: /usr/bin/python3 chat_twisted.py PORT   (listens on 127.0.0.1:PORT; 0: any free port)

Prints "port N" on stdout once it listens.  Speaks what tests/bench/chat/chatload.c
needs of twine's chat (doc/chat.md), in the same format: the greeting, the nickname
dialogue (1-16 letters, digits, '_' or '-', starting with a letter, unique without
regard to case), "* Hello NICK. ...", "* N users online: ...", "* NICK has joined",
"* NICK has left", and every other line shown to everyone else as "<NICK> text".
Lines end in LF or CRLF (the CR is stripped); it sends CRLF.  No commands, no
limit on what a slow client is owed: this is the classic Twisted chat example
(LineReceiver, one sendLine per recipient), which is what the benchmark compares
twine with.  Twisted's transport.write only appends to a buffer that the reactor
sends when the socket is writable, so it too writes once per recipient per
reactor iteration; the difference measured is the cost of everything else.
"""
import re
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import protocol, reactor  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402

NICK = re.compile(rb"[A-Za-z][A-Za-z0-9_-]{0,15}\Z")


class Chat(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 512 + 1  # twine's default max_line, plus the CR

    def __init__(self, users):
        self.users = users  # lower-cased nick -> Chat
        self.name = None

    def sendLine(self, line):  # the server sends CRLF, as twine's does
        self.transport.write(line + b"\r\n")

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.sendLine(b"* Welcome to twisted chat. What is your nickname?")

    def connectionLost(self, reason):
        if self.name is not None and self.users.get(self.name.lower()) is self:
            del self.users[self.name.lower()]
            self.broadcast(b"* " + self.name + b" has left")

    def lineReceived(self, line):
        if line.endswith(b"\r"):
            line = line[:-1]
        if self.name is None:
            self.handle_nick(line)
        elif line.strip():
            self.broadcast(b"<" + self.name + b"> " + line)

    def handle_nick(self, nick):
        nick = nick.strip()
        if not NICK.match(nick):
            self.sendLine(b"! a nickname is 1 to 16 letters, digits, _ or -, starting with a letter")
        elif nick.lower() in self.users:
            self.sendLine(b"! " + nick + b" is taken; choose another")
        else:
            self.name = nick
            self.users[nick.lower()] = self
            self.sendLine(b"* Hello " + nick + b". Type /help for the commands.")
            names = b" ".join(sorted(u.name for u in self.users.values()))
            self.sendLine(b"* %d users online: %s" % (len(self.users), names))
            self.broadcast(b"* " + nick + b" has joined")

    def broadcast(self, line):
        for user in self.users.values():
            if user is not self:
                user.sendLine(line)


class ChatFactory(protocol.Factory):
    noisy = False

    def __init__(self):
        self.users = {}

    def buildProtocol(self, addr):
        return Chat(self.users)


def main():
    port = reactor.listenTCP(int(sys.argv[1]), ChatFactory(), backlog=1024, interface="127.0.0.1")
    print("port %d" % port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
