#!/usr/bin/python3
"""Twisted echo server (Protocol/Factory, epoll reactor).

usage: /usr/bin/python3 echo_twisted.py PORT   (listens on 127.0.0.1:PORT)

Copied from the shared benchmark harness (shared/bench/echo_twisted.py, 2026-11-25)
into tests/bench/echo/ so that `make bench` does not depend on it; unchanged apart from this note.
"""
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import protocol, reactor  # noqa: E402


class Echo(protocol.Protocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        self.transport.write(data)


class EchoFactory(protocol.Factory):
    protocol = Echo
    noisy = False


def main():
    port = int(sys.argv[1])
    reactor.listenTCP(port, EchoFactory(), backlog=1024, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
