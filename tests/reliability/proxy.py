#!/usr/bin/env python3
"""A TCP proxy between `nvmevm migrate` (source) and `nvmevm run --incoming` (destination)
that mutates or cuts the migration stream, for tests/reliability/*.sh.

It stays up for many cases so the shell scripts pay Python's start-up once (seconds under
nested TCG). Each case is one line on stdin, answered by one line on stdout:

  measure DPORT              forward unchanged
  mutate SEED LEN DPORT      one random mutation (kind and offset from SEED) at an offset
                             below LEN (a measured stream length) of the source's bytes
  cut OFFSET DPORT           forward the source's first OFFSET bytes, then close both sides
  cutreply N DPORT           forward the whole stream, but only the destination's first N
                             reply bytes, then close both sides
  quit

The answer: `result key=value ...` with the bytes each way, the mutation and where in the
stream it landed. The proxy parses the source's (unmutated) stream as migrate/stream.h
describes it, so it can say which section a change hit, and it never moves a mutation past
the end section: every mutation changes a byte the destination reads.
"""
import random
import select
import socket
import struct
import sys

HDR = 16  # "NVMEVMIG", version u32, flags u32
SEC_HDR = 24  # id u32, version u16, flags u16, length u64, crc32c u32, reserved u32
SEC_END = 0xFFFFFFFF
TAIL = 32768
HANDOVER = len(b"HANDOVER\n")
SEC_NAMES = {1: "config", 2: "ram", SEC_END: "end"}


class Parser:
    """Follows the source's stream and names the region of each offset."""

    def __init__(self):
        self.buf = b""  # bytes of an incomplete header
        self.pos = 0  # offset of the first byte in buf
        self.state = "header"
        self.need = HDR
        self.sec = None
        self.end_at = None  # offset of the end section's header
        self.regions = []  # (start, stop, name), in order

    def feed(self, data):
        """Consumes data; returns how many leading bytes are fully parsed (forwardable
        without a later surprise about where the end section is)."""
        i = 0
        while i < len(data):
            if self.state in ("header", "sechdr"):
                take = min(self.need - len(self.buf), len(data) - i)
                self.buf += data[i : i + take]
                i += take
                if len(self.buf) < self.need:
                    return i - len(self.buf)
                start = self.pos
                if self.state == "header":
                    self.regions.append((start, start + HDR, "stream-header"))
                    self.state, self.need = "sechdr", SEC_HDR
                else:
                    sid, _, _, length, _, _ = struct.unpack("<IHHQII", self.buf)
                    name = SEC_NAMES.get(sid, "0x%x" % sid)
                    self.regions.append((start, start + SEC_HDR, "hdr:" + name))
                    if sid == SEC_END:
                        self.end_at = start
                        self.state = "tail"
                    elif length:
                        self.state, self.need, self.sec = "payload", length, name
                        self.regions.append((start + SEC_HDR, start + SEC_HDR + length, name))
                self.pos += len(self.buf)
                self.buf = b""
            elif self.state == "payload":
                take = min(self.need, len(data) - i)
                i += take
                self.pos += take
                self.need -= take
                if not self.need:
                    self.state, self.need = "sechdr", SEC_HDR
            else:  # after the end section: the HANDOVER line
                self.pos += len(data) - i
                i = len(data)
        return i

    def region(self, off):
        for start, stop, name in self.regions:
            if start <= off < stop:
                return name
        return "tail" if self.end_at is not None and off >= self.end_at + SEC_HDR else "?"


class Case:
    def __init__(self, words):
        self.kind = words[0]
        self.rng = None
        self.cut_at = None  # source bytes to forward before closing
        self.reply_limit = None
        self.mut = None  # (kind, offset, arg)
        self.tail = None  # offset given from the end section: resolved once it is seen
        if self.kind == "mutate":
            seed, length = int(words[1]), int(words[2])
            self.rng = random.Random(seed)
            kind = self.rng.choice(["flip", "replace", "truncate", "insert", "dup"])
            # Uniform offsets land mostly in RAM pages; a fifth goes to the header and the
            # configuration, two fifths to the last 32 KiB (device state, the end section).
            where = self.rng.random()
            if where < 0.2:
                off = self.rng.randrange(1, 100)
            elif where < 0.6:
                self.tail = self.rng.randint(1, TAIL)
                off = None
            else:
                off = self.rng.randrange(1, max(2, length))
            if kind == "flip":
                arg = self.rng.randrange(8)
            elif kind == "replace":
                arg = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 16)))
            elif kind == "insert":
                arg = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 64)))
            elif kind == "dup":
                arg = self.rng.randint(1, 4096)
            else:
                arg = None
            self.mut = [kind, off, arg]
            if kind == "truncate":
                self.cut_at = off
        elif self.kind == "cut":
            self.cut_at = int(words[1])
        elif self.kind == "cutend":  # cut D bytes before the end of HANDOVER
            self.tail = int(words[1])
        elif self.kind == "cutreply":
            self.reply_limit = int(words[1])
        self.dport = int(words[-1])
        self.changed = False  # did any byte the destination got differ?
        self.where = "-"
        self.clamped = False
        self.hist = b""  # the last bytes forwarded, for "dup"


def run_case(lsock, case):
    src, _ = lsock.accept()
    dst = socket.create_connection(("127.0.0.1", case.dport))
    parser = Parser()
    pending = b""  # source bytes not yet parsed far enough to forward
    sent = 0  # source offset of the next byte to forward (original numbering)
    fwd = back = 0
    replies = b""
    closed = "eof"
    open_src = open_dst = True
    try:
        while open_src or open_dst:
            rl = ([src] if open_src else []) + ([dst] if open_dst else [])
            r, _, _ = select.select(rl, [], [])
            if dst in r:
                data = dst.recv(65536)
                if not data:
                    open_dst = False
                    src.shutdown(socket.SHUT_WR)
                else:
                    if case.reply_limit is not None and back + len(data) > case.reply_limit:
                        data = data[: case.reply_limit - back]
                        src.sendall(data)
                        back += len(data)
                        replies += data
                        closed = "reply-cut"
                        break
                    src.sendall(data)
                    back += len(data)
                    replies += data[:200]
            if src in r:
                data = src.recv(65536)
                if not data:
                    open_src = False
                    if pending:
                        dst.sendall(pending)
                        fwd += len(pending)
                        sent += len(pending)
                        pending = b""
                    if open_dst:
                        dst.shutdown(socket.SHUT_WR)
                    continue
                parser.feed(data)
                pending += data
                chunk, consumed, stop = forward_chunk(case, parser, pending, sent, back > 0)
                pending = pending[consumed:]
                sent += consumed
                dst.sendall(chunk)
                fwd += len(chunk)
                if stop:
                    closed = "cut"
                    break
    except OSError as e:
        closed = "error:" + e.__class__.__name__
    finally:
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass
    reply = replies.decode("latin-1").replace("\n", "|").replace(" ", "_")[:120]
    fields = ["kind=" + case.kind, "fwd=%d" % fwd, "back=%d" % back, "src_bytes=%d" % sent,
              "closed=" + closed, "replies=" + (reply or "-")]
    if case.mut:
        fields += ["mutation=" + case.mut[0], "offset=%s" % case.mut[1],
                   "changed=%d" % case.changed, "where=" + case.where,
                   "clamped=%d" % case.clamped]
    if case.cut_at is not None:
        fields += ["cut_at=%d" % case.cut_at, "cut_clamped=%d" % case.clamped, "cut_where=" + parser.region(case.cut_at)
                   if case.cut_at < parser.pos else "cut_where=beyond-stream"]
    if parser.end_at is not None:
        fields.append("end_at=%d" % parser.end_at)
    return "result " + " ".join(fields)


def forward_chunk(case, parser, pending, sent, replied):
    """Returns (bytes for the destination, source bytes consumed, stop). Only parsed bytes
    go out, so a mutation can still be moved into the end section before that is sent."""
    ready = max(0, min(parser.pos - sent, len(pending)))
    if case.tail is not None:
        # Hold back what the offset may still fall into, once the configuration was
        # answered (before that the source waits for the answer).
        if parser.end_at is None and replied:
            ready = max(0, min(ready, parser.pos - TAIL - HANDOVER - SEC_HDR - sent))
        elif parser.end_at is not None:
            end = parser.end_at + SEC_HDR
            if case.mut:
                case.mut[1] = max(1, end - case.tail)
                if case.mut[0] == "truncate":
                    case.cut_at = case.mut[1]
            else:
                case.cut_at = max(0, end + HANDOVER - case.tail)
            case.tail = None
    data = pending[:ready]
    lo, hi = sent, sent + ready
    # A cut beyond this stream's end (streams differ in length) moves into its last bytes.
    if case.kind == "cut" and parser.end_at is not None and not case.clamped \
            and case.cut_at >= parser.end_at + SEC_HDR + HANDOVER:
        case.cut_at = parser.end_at + case.cut_at % (SEC_HDR + HANDOVER)
        case.clamped = True
    if case.mut and case.where == "-" and parser.end_at is not None \
            and case.mut[1] >= parser.end_at + SEC_HDR:
        case.mut[1] = parser.end_at + case.mut[1] % SEC_HDR
        case.clamped = True
        if case.mut[0] == "truncate":
            case.cut_at = case.mut[1]
    if case.cut_at is not None and case.cut_at < hi:
        keep = max(0, case.cut_at - lo)
        if case.mut:
            case.where = parser.region(case.cut_at)
            case.changed = True
        return data[:keep], keep, True
    if case.mut and case.where == "-" and case.mut[0] != "truncate" \
            and case.mut[1] is not None and lo <= case.mut[1] < hi:
        kind, off, arg = case.mut
        k = off - lo
        case.where = parser.region(off)
        if kind == "flip":
            data = data[:k] + bytes([data[k] ^ (1 << arg)]) + data[k + 1 :]
            case.changed = True
        elif kind == "replace":
            arg = arg[: len(data) - k]
            if arg == data[k : k + len(arg)]:  # random bytes equal to the old ones
                arg = bytes([arg[0] ^ 0xFF]) + arg[1:]
            case.changed = True
            data = data[:k] + arg + data[k + len(arg) :]
        elif kind == "insert":
            data = data[:k] + arg + data[k:]
            case.changed = True
        elif kind == "dup":
            before = (case.hist + data[:k])[-arg:]
            data = data[:k] + before + data[k:]
            case.changed = len(before) > 0
    case.hist = (case.hist + data)[-4096:]
    return data, ready, False


def main():
    port = int(sys.argv[1])
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(1)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            print(run_case(lsock, Case(words)), flush=True)
        except Exception as e:  # one answer line per case, whatever happened
            print("result kind=%s closed=proxy-error:%s" % (words[0], str(e).replace(" ", "_")),
                  flush=True)


if __name__ == "__main__":
    main()
