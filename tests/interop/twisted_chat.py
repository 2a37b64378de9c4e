#!/usr/bin/python3
"""twisted_chat.py -- Twisted LineReceiver clients of twine's chat server
(examples/chat-server), for tests/interop/run.sh.

  twisted_chat.py pair --port P
      Two clients, alice and bob, in one process: both join; alice says a
      line and bob must see "<alice> ..."; bob does /me and alice must see
      "* bob ..."; alice sends bob a /msg; bob quits (the server must close
      his connection and tell alice); alice quits.
  twisted_chat.py talk --port P --nick N --say TEXT [--quit MESSAGE]
      Join as N, say TEXT, then "/quit MESSAGE": the server must close.
  twisted_chat.py listen --port P --nick N --expect LINE
      Join as N and print "joined"; wait for the line LINE (exactly); print
      "got: LINE"; quit.

Every line received is echoed on stdout as "NICK<< line".  Exits 0 when
everything expected happened, 1 with a traceback otherwise, and at most
--timeout seconds (default 20) after starting.  Loopback only.
"""
import argparse

from twisted.internet import defer, endpoints, task
from twisted.protocols import basic


class ChatClient(basic.LineReceiver):
    # The server sends CRLF; LineReceiver's default delimiter is "\r\n", so
    # what Twisted sends ends in CRLF too (the server takes LF or CRLF).
    def __init__(self, nick):
        self.nick = nick
        self.lines = []
        self.waiters = []
        self.closed = defer.Deferred()

    def lineReceived(self, line):
        text = line.decode("utf-8", "replace")
        print("%s<< %s" % (self.nick, text), flush=True)
        self.lines.append(text)
        for w in list(self.waiters):
            pred, d = w
            if pred(text):
                self.waiters.remove(w)
                d.callback(text)

    def connectionLost(self, reason):
        waiters, self.waiters = self.waiters, []
        for _, d in waiters:
            d.errback(RuntimeError("%s: connection lost while waiting: %s"
                                   % (self.nick, reason.getErrorMessage())))
        self.closed.callback(reason.getErrorMessage())  # not the Failure: that would errback

    def wait_line(self, pred):
        """A Deferred for the first line, already received or to come, for
        which pred(line) holds."""
        for text in self.lines:
            if pred(text):
                return defer.succeed(text)
        d = defer.Deferred()
        self.waiters.append((pred, d))
        return d

    def wait_exact(self, want):
        return self.wait_line(lambda t: t == want)

    def say(self, text):
        self.sendLine(text.encode("utf-8"))


@defer.inlineCallbacks
def join(reactor, port, nick):
    ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10)
    c = yield endpoints.connectProtocol(ep, ChatClient(nick))
    yield c.wait_line(lambda t: "nickname" in t)
    c.say(nick)
    yield c.wait_line(lambda t: t.startswith("* Hello %s" % nick))
    return c


@defer.inlineCallbacks
def quit_and_wait(c, message=None):
    c.say("/quit" if message is None else "/quit " + message)
    yield c.wait_exact("* Bye.")
    why = yield c.closed
    print("%s: connection closed by the server (%s)" % (c.nick, why), flush=True)


@defer.inlineCallbacks
def pair(reactor, args):
    alice = yield join(reactor, args.port, "alice")
    bob = yield join(reactor, args.port, "bob")
    yield alice.wait_line(lambda t: t.startswith("* ") and "bob" in t)  # bob's arrival
    alice.say("hello from twisted")
    yield bob.wait_exact("<alice> hello from twisted")
    bob.say("/me waves")
    yield alice.wait_exact("* bob waves")
    alice.say("/msg bob psst")
    yield bob.wait_exact("*alice* psst")
    yield quit_and_wait(bob, "bye")
    yield alice.wait_exact("* bob has left (quit: bye)")
    yield quit_and_wait(alice)


@defer.inlineCallbacks
def talk(reactor, args):
    c = yield join(reactor, args.port, args.nick)
    print("joined", flush=True)
    c.say(args.say)
    yield quit_and_wait(c, args.quit)


@defer.inlineCallbacks
def listen(reactor, args):
    c = yield join(reactor, args.port, args.nick)
    print("joined", flush=True)
    yield c.wait_exact(args.expect)
    print("got: %s" % args.expect, flush=True)
    yield quit_and_wait(c)


def main(reactor, args):
    d = {"pair": pair, "talk": talk, "listen": listen}[args.mode](reactor, args)
    d.addTimeout(args.timeout, reactor)
    return d


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["pair", "talk", "listen"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--nick")
    ap.add_argument("--say")
    ap.add_argument("--quit")
    ap.add_argument("--expect")
    ap.add_argument("--timeout", type=float, default=20.0)
    a = ap.parse_args()
    if a.mode != "pair" and not a.nick:
        ap.error("--nick is required")
    if (a.mode == "talk" and a.say is None) or (a.mode == "listen" and a.expect is None):
        ap.error("talk needs --say, listen needs --expect")
    task.react(main, [a])
