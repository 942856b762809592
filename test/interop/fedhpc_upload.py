"""The upload stream (docs/protocol.md, "The upload stream"): an encoded delta cut into stripes, each
on its own bidirectional `Upload` stream with a header, windowed chunks with CRC32C, a SHA-256 per
piece, acknowledgements, resends, a trailer and the result; a broken stream resumes from the
offset the coordinator accepts. With parts (docs/protocol.md, "Part uploads"), each part goes to
its aggregator shard, its stripes tiling the part.
"""

import hashlib
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

import fedhpc_formats as fmt

MAX_STRIPES = 64
RETRYABLE_UPLOAD = {"UPLOAD_INTERRUPTED", "TOO_MANY_STREAMS", "CHECKSUM_MISMATCH", "RATE_LIMITED", "INTERNAL"}


class UploadFailed(Exception):
    def __init__(self, code, message, retryable=False):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retryable = retryable
        self.codes = [code]


def error_of(e):
    """Errors on the wire: the fedhpc code and retry verdict of a failed call."""
    meta = dict(e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else {}
    code = meta.get("fedhpc-error-code") or (e.code().name if hasattr(e, "code") and e.code() else "UNKNOWN")
    verdict = meta.get("fedhpc-retryable")
    if verdict is not None:
        retryable = verdict == "true"
    else:
        # A status without a verdict comes from gRPC itself.
        retryable = code not in {"INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "FAILED_PRECONDITION", "OUT_OF_RANGE", "UNAUTHENTICATED"}
    return code, retryable, e.details() if hasattr(e, "details") else str(e)


def plan_stripes(segments, start, end, streams, min_stripe_bytes):
    """Stripes of [start, end): contiguous ranges whose ends lie on unit boundaries, at most `streams` of them."""
    size = end - start
    count = max(1, min(streams, MAX_STRIPES, size // max(1, min_stripe_bytes)))
    cuts = [start]
    for k in range(1, count):
        want = start + size * k // count
        cut = _unit_floor(segments, want)
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts.append(end)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


class Part:
    """Bytes [start, end) of the delta and the stub that takes them: the coordinator's for the whole
    delta (part fields 0/0), or an aggregator shard's."""

    def __init__(self, stub, start, end, data, whole):
        self.stub, self.start, self.end, self.whole = stub, start, end, whole
        self.sha256 = hashlib.sha256(data[start:end]).hexdigest()
        self.complete = None


def _unit_floor(segments, at):
    for _, start, end, unit in segments:
        if start <= at < end:
            return start + (at - start) // unit * unit
    return at


def pieces_of(segments, start, end):
    """Pieces: each segment cut to the stripe, as (segment number, start, end)."""
    return [(i, max(s, start), min(e, end)) for i, s, e, _ in segments if s < end and e > start]


class Upload:
    """One attempt's delta upload. `header` is an UploadHeader without its stripe fields."""

    def __init__(self, stub, pb, header, data, segments, streams, chunk_bytes, deadline_s, events, cut_after=None, cancelled=None, min_stripe_bytes=32 * 1024, corrupt=(), parts=None):
        self.stub, self.pb, self.header, self.data = stub, pb, header, data
        self.segments = segments
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.chunk_bytes = chunk_bytes
        self.deadline_s = deadline_s
        self.events = events
        self.cut_after = cut_after
        # Test behaviour: "crc" sends one chunk with a wrong CRC32C, "digest" one wrong piece digest.
        self.corrupt = set(corrupt)
        self.cancelled = cancelled or threading.Event()
        # `parts`: (stub, start, end) of each aggregator shard the coordinator named; none: the whole delta.
        self.parts = [Part(st, a, b, data, False) for st, a, b in parts] if parts else [Part(stub, 0, len(data), data, True)]
        # Each part gets its share of the streams, at least one.
        self.striped = []
        for part in self.parts:
            share = max(1, round(streams * (part.end - part.start) / max(1, len(data))))
            self.striped += [(part, a, b) for a, b in plan_stripes(segments, part.start, part.end, share, min_stripe_bytes)]
        self.stripes = [(a, b) for _, a, b in self.striped]
        self.sent = 0
        self.lock = threading.Lock()

    def run(self):
        count = len(self.stripes)
        per_part = {id(p): sum(1 for q, _, _ in self.striped if q is p) for p in self.parts}
        with ThreadPoolExecutor(max_workers=count) as pool:
            futures = [pool.submit(self._stripe, i, part, a, b, per_part[id(part)]) for i, (part, a, b) in enumerate(self.striped)]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            # Stripes may fail differently (one header refused, another finding the attempt closed
            # to the site since): every stripe's code goes with the first error.
            failed[0].codes = [getattr(e, "code", type(e).__name__) for e in failed]
            raise failed[0]
        done = [p for p in self.parts if p.complete is not None]
        if len(done) != len(self.parts):
            raise UploadFailed("UPLOAD_INCOMPLETE", f"every stripe was received but {len(done)} of {len(self.parts)} parts were reported complete")
        if len(self.parts) == 1 and self.parts[0].whole:
            return self.parts[0].complete
        return {"sha256": self.sha256, "bytes": len(self.data), "parts": [{"start": p.start, "end": p.end, **p.complete} for p in self.parts]}

    def _stripe(self, index, part, start, end, count):
        attempts = 0
        cut = self.cut_after if index == 0 else None
        while True:
            if self.cancelled.is_set():
                raise UploadFailed("CANCELLED", "the attempt was cancelled")
            if time.time() > self.deadline_s:
                raise UploadFailed("DEADLINE", f"stripe {index} not delivered by the upload deadline")
            stream = StripeStream(self, part, index, start, end, 0 if count == 1 and part.whole else count, cut)
            cut = None
            try:
                return stream.run()
            except UploadFailed as e:
                attempts += 1
                if not e.retryable or attempts > 20:
                    raise
                self.events("upload-retry", stripe=index, code=e.code, message=str(e))
                time.sleep(min(2.0, 0.1 * attempts))


class StripeStream:
    """One `Upload` call for the stripe [start, end)."""

    def __init__(self, upload, part, index, start, end, declared_count, cut_after):
        self.u = upload
        self.part = part
        self.index, self.start, self.end = index, start, end
        self.declared_count = declared_count
        self.cut_after = cut_after
        self.pieces = pieces_of(upload.segments, start, end)
        self.outbox = queue.Queue()
        self.pos = start
        self.acked = start
        self.window = 0
        self.chunk = upload.chunk_bytes
        self.trailer_sent = False
        self.sent_here = 0
        self.cutting = False
        self.call = None

    def _requests(self):
        while True:
            m = self.outbox.get()
            if m is None:
                return
            yield m

    def run(self):
        pb = self.u.pb
        h = pb.UploadHeader()
        h.CopyFrom(self.u.header)
        if self.declared_count:
            h.stripe_offset, h.stripe_bytes, h.stripe_count = self.start, self.end - self.start, self.declared_count
        if not self.part.whole:
            h.part_start, h.part_end = self.part.start, self.part.end
        h.chunk_bytes = self.u.chunk_bytes
        self.outbox.put(pb.UploadMessage(header=h))
        timeout = max(1.0, self.u.deadline_s - time.time())
        self.call = self.part.stub.Upload(self._requests(), timeout=timeout)
        watchdog = threading.Thread(target=self._watch, daemon=True)
        watchdog.start()
        try:
            for reply in self.call:
                kind = reply.WhichOneof("kind")
                if kind == "queued":
                    continue
                if kind == "accepted":
                    self._accepted(reply.accepted)
                elif kind == "ack":
                    self.acked = max(self.acked, reply.ack.offset)
                    if self.cutting:
                        self._cut()
                    else:
                        self._pump()
                elif kind == "resend":
                    self.u.events("upload-resend", stripe=self.index, offset=reply.resend.offset, reason=reply.resend.reason)
                    self.pos = reply.resend.offset
                    self.trailer_sent = False
                    self._pump()
                elif kind == "result":
                    return self._result(reply.result)
        except grpc.RpcError as e:
            code, retryable, details = error_of(e)
            if self.cutting and code == "CANCELLED":
                raise UploadFailed("CUT", f"stripe {self.index} cut by this agent after {self.sent_here} bytes", retryable=True) from e
            raise UploadFailed(code, details, retryable=retryable or code in RETRYABLE_UPLOAD) from e
        finally:
            self.outbox.put(None)
            self.done = True
        raise UploadFailed("UPLOAD_INTERRUPTED", f"stripe {self.index}: the stream ended without a result", retryable=True)

    def _watch(self):
        # A cut: stop sending, give the coordinator a moment to take what was sent, then cancel.
        while not getattr(self, "done", False):
            if self.u.cancelled.is_set():
                self.call.cancel()
                return
            if self.cutting and time.time() > self.cut_at + 0.5:
                self._cut()
                return
            time.sleep(0.05)

    def _cut(self):
        if self.call is not None and not getattr(self, "cut_done", False):
            self.cut_done = True
            self.u.events("upload-cut", stripe=self.index, sent_to=self.pos, acked=self.acked)
            self.call.cancel()

    def _accepted(self, a):
        if not self.start <= a.offset <= self.end:
            raise UploadFailed("UPLOAD_INVALID", f"accepted offset {a.offset} outside stripe [{self.start}, {self.end})")
        if a.offset != self.start:
            self.u.events("upload-resumed", stripe=self.index, offset=a.offset, stripe_start=self.start, stripe_end=self.end)
        self.pos = self.acked = a.offset
        self.window = a.window_bytes
        if a.chunk_bytes:
            self.chunk = min(self.chunk, a.chunk_bytes)
        self._pump()

    def _next_chunk_end(self):
        piece_end = next(e for _, s, e in self.pieces if s <= self.pos < e)
        limit = min(piece_end, self.pos + self.chunk)
        if limit == piece_end:
            return limit
        # Chunks and stripes end on unit boundaries, counted from the segment's start.
        return _unit_floor(self.u.segments, limit)

    def _pump(self):
        """Sends chunks (and the digest after each piece) while the window allows, then the trailer."""
        while self.pos < self.end and not self.cutting:
            end = self._next_chunk_end()
            if end <= self.pos or end > self.acked + self.window:
                return
            data = self.u.data[self.pos:end]
            crc = fmt.crc32c(data)
            if "crc" in self.u.corrupt:
                self.u.corrupt.discard("crc")
                crc ^= 1
                self.u.events("upload-corrupted", stripe=self.index, what="crc", offset=self.pos)
            self.outbox.put(self.u.pb.UploadMessage(chunk=self.u.pb.UploadChunk(offset=self.pos, data=data, crc32c=crc)))
            self.sent_here += end - self.pos
            for seg, s, e in self.pieces:
                if e == end:
                    digest = hashlib.sha256(self.u.data[s:e]).hexdigest()
                    if "digest" in self.u.corrupt:
                        self.u.corrupt.discard("digest")
                        digest = hashlib.sha256(b"not " + self.u.data[s:e]).hexdigest()
                        self.u.events("upload-corrupted", stripe=self.index, what="digest", tensor=seg)
                    self.outbox.put(self.u.pb.UploadMessage(digest=self.u.pb.TensorDigest(tensor=seg, sha256=digest)))
            self.pos = end
            if self.cut_after is not None and self.sent_here >= self.cut_after:
                self.cutting = True
                self.cut_at = time.time()
                return
        if self.pos == self.end and not self.trailer_sent:
            self.trailer_sent = True
            self.outbox.put(self.u.pb.UploadMessage(trailer=self.u.pb.UploadTrailer(sha256=self.part.sha256)))

    def _result(self, r):
        if not r.accepted:
            raise UploadFailed("UPLOAD_REFUSED", r.message)
        if r.complete:
            size = self.part.end - self.part.start
            if r.sha256 != self.part.sha256 or r.received_bytes != size:
                raise UploadFailed("UPLOAD_MISMATCH", f"the server spooled {r.received_bytes} bytes with SHA-256 {r.sha256}, this agent sent {size} with {self.part.sha256}")
            self.part.complete = {"sha256": r.sha256, "bytes": r.received_bytes}
        self.u.events("stripe-done", stripe=self.index, start=self.start, end=self.end, complete=r.complete, message=r.message)
        return r
