#!/usr/bin/python3
"""twisted_peer.py -- real Twisted framing peers for tests/interop/run.sh.

  twisted_peer.py server SPEC...
      Echo servers on 127.0.0.1 (ports chosen by the kernel) built on
      Twisted's own LineReceiver, NetstringReceiver and Int32StringReceiver.
      SPEC is FRAMING (line, netstring, int32: Twisted's MAX_LENGTH) or
      FRAMING:MAX.  Prints "SPEC port N" for each once listening; runs until
      SIGTERM or SIGINT.

  twisted_peer.py client FRAMING --port P [--max N] SCENARIO...
      A Twisted client of FRAMING against a twine server whose maximum length
      is N (default: Twisted's), running each SCENARIO on a new connection, in
      turn, and printing "ok SCENARIO: ..." or "FAIL SCENARIO: ..." for each.
      Exits 0 when every scenario held, 1 otherwise.  Each scenario is bounded
      by --timeout seconds (default 20).  Scenarios:

      edge            frames of 0, 1, 2, N-1 and N bytes and awkward ones
                      (lone CR, lone LF, NUL, ...), one send call each; every
                      echo must come back, in order; then a clean close.
      split           the same frames written in pieces with a 1 ms pause
                      after each: every frame's header and trailer byte by
                      byte, the middle in slices.
      bytes           small frames, the whole stream written byte by byte.
      batch           400 frames of assorted sizes, 10 of them N or N-1 bytes,
                      in one write.
      oversize        frames, their echoes, then one whole frame of N+1 bytes:
                      the server must close the connection without echoing
                      it.  (The close may come as a RST: the rest of the frame
                      is still unread when the server closes.)
      oversize-early  only the start of an N+1 frame (a line of N+1 bytes and
                      no end, the digits "N+1:", a 4-byte prefix saying N+1),
                      byte by byte, then nothing: the server must refuse it
                      from what it has seen and close, not wait for the rest.
      oversize-batch  frames and the start of an N+1 frame in one write: the
                      echoes of the frames (flushed before the close), then
                      the close.

Loopback only.  Runs with Debian's python3-twisted (/usr/bin/python3).
"""
import argparse
import sys

from twisted.internet import defer, error, protocol, reactor
from twisted.protocols import basic

RECEIVERS = {
    "line": basic.LineReceiver,
    "netstring": basic.NetstringReceiver,
    "int32": basic.Int32StringReceiver,
}

SCENARIOS = ["edge", "split", "bytes", "batch", "oversize", "oversize-early", "oversize-batch"]


def make_receiver_class(framing, max_length):
    """A subclass of Twisted's receiver for `framing`, with MAX_LENGTH set,
    whose frames all go to self.frameReceived and are sent by sendFrame."""
    base = RECEIVERS[framing]
    attrs = {}
    if max_length is not None:
        attrs["MAX_LENGTH"] = max_length
    if framing == "line":
        attrs["lineReceived"] = lambda self, line: self.frameReceived(line)
        attrs["sendFrame"] = lambda self, data: self.sendLine(data)
    else:
        attrs["stringReceived"] = lambda self, s: self.frameReceived(s)
        attrs["sendFrame"] = lambda self, data: self.sendString(data)
    return type("Framed" + base.__name__, (base,), attrs)


def encode(framing, data):
    """The wire form of one frame, as Twisted's own senders write it."""
    if framing == "line":
        return data + b"\r\n"
    if framing == "netstring":
        return b"%d:%s," % (len(data), data)
    return len(data).to_bytes(4, "big") + data


def pattern(framing, index, length):
    """Frame number `index`: printable for lines, every byte value otherwise;
    different for each index, so a reordered or repeated echo is caught."""
    if framing == "line":
        alnum = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        return bytes(alnum[(index * 7 + j) % len(alnum)] for j in range(length))
    return bytes((index * 31 + j * 7 + (j >> 8)) & 0xFF for j in range(length))


def edge_frames(framing, mx):
    sizes = [0, 1, 2, max(mx - 1, 0), mx]
    frames = [pattern(framing, i, n) for i, n in enumerate(sizes)]
    if framing == "line":
        # Bytes that are not the whole delimiter "\r\n" belong to the line.
        frames += [b"lone\rcr", b"lone\nlf", b"trailing cr\r", b"\nleading lf",
                   b"nul\x00byte", b"\xff\xfe high bytes", b" spaces  "]
    else:
        frames += [b"\r\n", b",", b"0:,", b"\x00\x00\x00\x05", b"12:", b"\x00"]
    return [f for f in frames if len(f) <= mx]


def small_frames(framing):
    frames = [pattern(framing, i, n) for i, n in enumerate([0, 1, 2, 3, 0, 9, 10, 11])]
    return frames + [b"x" * 99, b"y" * 100, b"z" * 101]


def split_pieces(wire):
    """The first 6 and last 3 bytes one by one, the middle in 4 KiB slices."""
    head, tail = 6, 3
    if len(wire) <= head + tail:
        return [wire[i:i + 1] for i in range(len(wire))]
    middle = wire[head:-tail]
    return ([wire[i:i + 1] for i in range(head)]
            + [middle[i:i + 4096] for i in range(0, len(middle), 4096)]
            + [wire[i:i + 1] for i in range(len(wire) - tail, len(wire))])


class Scenario:
    """One scenario on one connection.  self.result fires with (ok, message)
    once the connection is gone (or could not be made)."""

    def __init__(self, name, framing, mx, timeout):
        self.name, self.framing, self.mx = name, framing, mx
        self.result = defer.Deferred()
        self.outcome = None       # (ok, message) once decided
        self.expect = []          # echoes still to come, in order
        self.expect_close = False # the server must close
        self.closing = False      # we closed, after the last echo
        self.on_all_echoed = None
        self.proto = None
        self.got = 0
        self.timer = reactor.callLater(timeout, self.timed_out, timeout)

    # -- outcome -------------------------------------------------------------
    def decide(self, ok, msg):
        """Record the outcome (the first one wins); a failure aborts."""
        if self.outcome is not None:
            return
        self.outcome = (ok, msg)
        if not ok and self.proto is not None and self.proto.transport is not None:
            self.proto.transport.abortConnection()

    def report(self):
        if self.timer.active():
            self.timer.cancel()
        if not self.result.called:
            self.result.callback(self.outcome)

    def timed_out(self, timeout):
        self.decide(False, "timed out after %.0f s (%d echoes, %d missing)"
                    % (timeout, self.got, len(self.expect)))
        if self.proto is None:
            self.report()

    # -- events from the protocol ----------------------------------------------
    def connected(self, proto):
        self.proto = proto
        proto.transport.setTcpNoDelay(True)
        getattr(self, "run_" + self.name.replace("-", "_"))()

    def frame(self, data):
        if self.outcome is not None:
            return
        if not self.expect:
            return self.decide(False, "unexpected frame of %d bytes after %d echoes"
                               % (len(data), self.got))
        want = self.expect.pop(0)
        if data != want:
            return self.decide(False, "echo %d: got %d bytes %r..., want %d bytes %r..."
                               % (self.got, len(data), data[:16], len(want), want[:16]))
        self.got += 1
        if not self.expect:
            if self.on_all_echoed is not None:
                fn, self.on_all_echoed = self.on_all_echoed, None
                fn()
            elif not self.expect_close:
                self.closing = True
                self.proto.transport.loseConnection()

    def lost(self, reason):
        why = reason.getErrorMessage()
        if self.expect:
            self.decide(False, "connection lost (%s) with %d echoes missing"
                        % (why, len(self.expect)))
        elif self.expect_close:
            self.decide(True, "%d echoes, then the server closed (%s)" % (self.got, why))
        elif self.closing:
            if reason.check(error.ConnectionDone):
                self.decide(True, "%d echoes, all correct; closed cleanly" % self.got)
            else:
                self.decide(False, "%d echoes, then an unclean close: %s" % (self.got, why))
        else:
            self.decide(False, "connection lost early: %s" % why)
        self.report()

    def failed(self, reason):
        self.decide(False, "connection failed: %s" % reason.getErrorMessage())
        self.report()

    # -- writing -----------------------------------------------------------------
    def write_pieces(self, pieces):
        """Each piece in its own write, with a 1 ms pause after it (Nagle is
        off, so most go out, and arrive, as separate segments)."""
        pieces = list(pieces)

        def step(i):
            if self.outcome is not None or self.proto.transport is None or i == len(pieces):
                return
            self.proto.transport.write(pieces[i])
            reactor.callLater(0.001, step, i + 1)
        step(0)

    def oversize_start(self):
        """What shows a frame is too long: N+1 bytes of a line (no end), a
        netstring's digits and colon, a 4-byte prefix -- and no more.  The
        server then has read all we sent when it closes, so it closes with a
        FIN: a close with unread input sends a RST (in twine as in Twisted),
        and a RST may destroy echoes still in flight."""
        n = self.mx + 1
        if self.framing == "line":
            return pattern("line", 5, n)
        if self.framing == "netstring":
            return b"%d:" % n
        return n.to_bytes(4, "big")

    # -- scenarios -----------------------------------------------------------------
    def run_edge(self):
        self.expect = edge_frames(self.framing, self.mx)
        for f in list(self.expect):
            self.proto.sendFrame(f)

    def run_split(self):
        self.expect = edge_frames(self.framing, self.mx)
        pieces = []
        for f in self.expect:
            pieces += split_pieces(encode(self.framing, f))
        self.write_pieces(pieces)

    def run_bytes(self):
        self.expect = small_frames(self.framing)
        wire = b"".join(encode(self.framing, f) for f in self.expect)
        self.write_pieces(wire[i:i + 1] for i in range(len(wire)))

    def run_batch(self):
        # A few at the maximum, not hundreds (100 KB strings are slow to
        # handle in Python).
        sizes = [0, 1, 7, 100, 3, 1000, 2, 64]
        self.expect = [pattern(self.framing, i, min(sizes[i % len(sizes)], self.mx))
                       for i in range(400)]
        for i in range(5, 400, 80):
            self.expect[i] = pattern(self.framing, i, self.mx)
            self.expect[i + 1] = pattern(self.framing, i + 1, self.mx - 1)
        self.proto.transport.write(b"".join(encode(self.framing, f) for f in self.expect))

    def run_oversize(self):
        frames = [b"", b"a", pattern(self.framing, 1, self.mx)]
        self.expect = list(frames)

        def send_big():
            self.expect_close = True
            self.proto.transport.write(encode(self.framing,
                                              pattern(self.framing, 9, self.mx + 1)))
        self.on_all_echoed = send_big
        for f in frames:
            self.proto.sendFrame(f)

    def run_oversize_early(self):
        self.expect_close = True
        self.write_pieces(split_pieces(self.oversize_start()))

    def run_oversize_batch(self):
        self.expect = [b"first", b"", pattern(self.framing, 3, self.mx)]
        self.expect_close = True
        wire = b"".join(encode(self.framing, f) for f in self.expect)
        self.proto.transport.write(wire + self.oversize_start())


class ClientProtocolMixin:
    def connectionMade(self):
        self.factory.scenario.connected(self)

    def frameReceived(self, data):
        self.factory.scenario.frame(data)

    def connectionLost(self, reason):
        self.factory.scenario.lost(reason)


@defer.inlineCallbacks
def run_client(args):
    # The client's own limit is above the server's: were the server to echo
    # an N+1 frame instead of refusing it, the client must see an unexpected
    # frame, not refuse it itself and take its own close for the server's.
    receiver = make_receiver_class(args.framing, 2 * args.max + 16)
    proto_class = type("ClientProtocol", (ClientProtocolMixin, receiver), {})
    failures = 0
    for name in args.scenarios:
        scenario = Scenario(name, args.framing, args.max, args.timeout)

        class Factory(protocol.ClientFactory):
            protocol = proto_class

            def clientConnectionFailed(self, connector, reason):
                self.scenario.failed(reason)

        factory = Factory()
        factory.scenario = scenario
        reactor.connectTCP("127.0.0.1", args.port, factory, timeout=10)
        ok, msg = yield scenario.result
        print("%s %s: %s" % ("ok" if ok else "FAIL", name, msg), flush=True)
        failures += not ok
    return failures


def run_server(specs):
    for spec in specs:
        framing, _, mx = spec.partition(":")
        if framing not in RECEIVERS:
            sys.exit("twisted_peer: unknown framing in %r" % spec)
        receiver = make_receiver_class(framing, int(mx) if mx else None)

        class Echo(receiver):
            def frameReceived(self, data):
                self.sendFrame(data)

        port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
        print("%s port %d" % (spec, port.getHost().port), flush=True)
    reactor.run()  # Twisted's own SIGTERM and SIGINT handlers stop it
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "server":
        if len(sys.argv) < 3:
            sys.exit("usage: twisted_peer.py server FRAMING[:MAX]...")
        return run_server(sys.argv[2:])
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["client"])
    ap.add_argument("framing", choices=sorted(RECEIVERS))
    ap.add_argument("scenarios", nargs="+", choices=SCENARIOS)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max", type=int)
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()
    if args.max is None:
        args.max = RECEIVERS[args.framing].MAX_LENGTH
    status = []

    def done(failures):
        status.append(1 if failures else 0)
        reactor.stop()

    def crashed(f):
        f.printTraceback()
        status.append(1)
        reactor.stop()
    reactor.callWhenRunning(lambda: run_client(args).addCallbacks(done, crashed))
    reactor.run()
    return status[0] if status else 1


if __name__ == "__main__":
    sys.exit(main())
