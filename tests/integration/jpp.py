"""A small, independent JPP/JPT-stream parser for the tests (T.808 Annex A,
D.3): it turns a response body into its messages, so the tests can check
what the server sent without trusting the server's own code."""


class Message:
    __slots__ = ("cls", "csn", "id", "off", "len", "complete", "aux", "body")

    def __init__(self, cls, csn, id_, off, length, complete, aux, body=None):
        self.cls, self.csn, self.id = cls, csn, id_
        self.off, self.len, self.complete, self.aux = off, length, complete, aux
        self.body = body

    def __repr__(self):
        return "Message(cls=%d csn=%d id=%d off=%d len=%d c=%d)" % (
            self.cls, self.csn, self.id, self.off, self.len, self.complete)


class StreamError(Exception):
    pass


def _vbas(buf, pos):
    v = 0
    for n in range(10):
        if pos >= len(buf):
            raise StreamError("VBAS runs past the end at byte %d" % pos)
        b = buf[pos]
        pos += 1
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            return v, pos
    raise StreamError("VBAS longer than 10 bytes")


def error_text(buf):
    """The sentence of an error answer: mod_jpip frames it as the body of an
    EOR message (so a JPP parser sees no data); a bare text body is
    returned as it is."""
    if len(buf) >= 3 and buf[0] == 0:
        try:
            n, p = _vbas(buf, 2)
        except StreamError:
            return buf
        if p + n == len(buf):
            return buf[p:]
    return buf


def parse(buf, bodies=False):
    """Return (messages, eor_reason or None, trailing_bytes); with bodies,
    each message also carries its bytes (.body)."""
    msgs = []
    state = [0, 0, 0]  # pos, class, codestream
    while state[0] < len(buf):
        eor = _message(buf, state, msgs, bodies)
        if eor is not None:
            return msgs, eor[0], eor[1]
    return msgs, None, 0


def parse_prefix(buf, bodies=False):
    """The whole messages of a stream cut short (a connection reset
    mid-answer): (messages, bytes after the last whole one)."""
    msgs = []
    state = [0, 0, 0]
    while state[0] < len(buf):
        start = state[0]
        try:
            if _message(buf, state, msgs, bodies) is not None:
                return msgs, 0
        except StreamError:
            return msgs, len(buf) - start
    return msgs, 0


def _message(buf, state, msgs, bodies):
    """Parse the message at state[0] into msgs; an EOR returns (reason,
    trailing bytes)."""
    pos, cls, csn = state
    first = buf[pos]
    if first == 0:  # EOR: 00 reason VBAS-length body
        if pos + 2 > len(buf):
            raise StreamError("truncated EOR")
        reason = buf[pos + 1]
        blen, p2 = _vbas(buf, pos + 2)
        return reason, len(buf) - (p2 + blen)
    bb = (first >> 5) & 3
    if bb == 0:
        raise StreamError("bb=00 in a message header at byte %d" % pos)
    complete = (first >> 4) & 1
    idv = first & 0x0F
    pos += 1
    if first & 0x80:
        while True:
            if pos >= len(buf):
                raise StreamError("truncated Bin-ID")
            b = buf[pos]
            pos += 1
            idv = (idv << 7) | (b & 0x7F)
            if not b & 0x80:
                break
    if bb >= 2:
        cls, pos = _vbas(buf, pos)
    if bb == 3:
        csn, pos = _vbas(buf, pos)
    off, pos = _vbas(buf, pos)
    length, pos = _vbas(buf, pos)
    aux = None
    if cls & 1:
        aux, pos = _vbas(buf, pos)
    if pos + length > len(buf):
        raise StreamError("message body runs past the end")
    msgs.append(Message(cls, csn, idv, off, length, complete, aux,
                        bytes(buf[pos:pos + length]) if bodies else None))
    state[0], state[1], state[2] = pos + length, cls, csn
    return None


def _vbas_bytes(v):
    out = [v & 0x7F]
    v >>= 7
    while v:
        out.append(0x80 | (v & 0x7F))
        v >>= 7
    return bytes(reversed(out))


def encode(msgs, eor=2):
    """A JPP/JPT-stream of the messages (each with .body), every header in
    full (class and codestream explicit: bb = 3), ending with EOR eor."""
    out = bytearray()
    for m in msgs:
        # Bin-ID: the top 4 bits in the first byte, then 7 bits a byte
        groups = []
        v = m.id
        while v >= 16:
            groups.append(v & 0x7F)
            v >>= 7
        first = 0x60 | (0x10 if m.complete else 0) | v
        if groups:
            first |= 0x80
        out.append(first)
        for i, g in enumerate(reversed(groups)):
            out.append(g | (0x80 if i + 1 < len(groups) else 0))
        out += _vbas_bytes(m.cls) + _vbas_bytes(m.csn) + _vbas_bytes(m.off)
        out += _vbas_bytes(len(m.body))
        if m.cls & 1:
            out += _vbas_bytes(m.aux or 0)
        out += m.body
    out += bytes((0, eor, 0))
    return bytes(out)
