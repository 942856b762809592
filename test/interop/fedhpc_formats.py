"""Byte formats of the fedhpc protocol outside secure aggregation, written from docs/protocol.md:
CRC32C, the delta encodings and their layouts, receipts, canonical JSON and the journal chain, and
the safetensors header of a downloaded model. Standard library and numpy only.
"""

import hashlib
import json
import math
import re
import struct
from decimal import Decimal

import numpy as np

# The protocol version this implementation speaks (docs/protocol.md, first line).
PROTOCOL_VERSION = 14

# ----------------------------------------------------------------------------- CRC32C


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data):
    """CRC32C (Castagnoli, reflected 0x1EDC6F41), as a Download or Upload chunk carries it."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ----------------------------------------------------------------------------- delta encodings

INT8_BLOCK = 128


def f32_to_bf16(bits):
    """Delta encodings, bf16: the upper 16 bits of an f32 (given as its bits) rounded to nearest even."""
    if (bits & 0x7F800000) == 0x7F800000 and (bits & 0x007FFFFF) != 0:
        return (bits >> 16) | 0x0040
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


def encode_int8(values):
    """Delta encodings, int8: blocks of 128, each an f32 scale = f32(absmax/127) and the int8 values."""
    x = np.asarray(values, dtype=np.float32)
    out = bytearray()
    for start in range(0, len(x), INT8_BLOCK):
        block = x[start:start + INT8_BLOCK].astype(np.float64)
        absmax = float(np.max(np.abs(block))) if len(block) else 0.0
        scale = float(np.float32(absmax / 127))
        out += struct.pack("<f", scale)
        if scale == 0:
            out += bytes(len(block))
            continue
        r = block / scale
        q = np.sign(r) * np.floor(np.abs(r) + 0.5)
        out += np.clip(q, -127, 127).astype(np.int8).tobytes()
    return bytes(out)


def segment_bytes(encoding, elements):
    """Bytes of one tensor of `elements` values in `encoding`."""
    if encoding in ("f32", "secagg32"):
        return 4 * elements
    if encoding in ("bf16", "secagg16"):
        return 2 * elements
    if encoding == "int8":
        return 4 * math.ceil(elements / INT8_BLOCK) + elements
    raise ValueError(f"unknown encoding {encoding}")


def unit_bytes(encoding):
    """Delta encodings: the unit a chunk may not split."""
    return {"f32": 4, "bf16": 2, "int8": 4 + INT8_BLOCK, "secagg32": 4, "secagg16": 2}[encoding]


def delta_segments(encoding, element_counts):
    """The segments (tensors, then the weight word of a masked encoding) as (index, start, end, unit)."""
    segments, at = [], 0
    unit = unit_bytes(encoding)
    for i, n in enumerate(element_counts):
        size = segment_bytes(encoding, n)
        segments.append((i, at, at + size, unit))
        at += size
    if encoding in ("secagg32", "secagg16"):
        segments.append((len(element_counts), at, at + unit, unit))
    return segments


# ----------------------------------------------------------------------------- receipts


USAGE_SOURCES = ("slurm-sacct", "wall-clock", "unknown")
# The usage's figures, in payload order, as a dict names them (the vectors' and the journal's keys).
USAGE_FIGURES = ("gpus", "wallMs", "allocatedGpuMs", "trainingGpuMs")
USAGE_KEYS = ("source",) + USAGE_FIGURES + ("jobs", "reason")
USAGE_REASON_MAX = 512
USAGE_GPUS_MAX = 1_000_000
MAX_SAFE_INTEGER = 2**53 - 1
_JOBS = re.compile(r"(?:[0-9A-Za-z_.+-]+(?:,[0-9A-Za-z_.+-]+)*)?")


def _safe_integer(x):
    """ECMAScript's Number.isSafeInteger: an integral number within ±(2^53 − 1) (an integral float too)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    if isinstance(x, float) and (not math.isfinite(x) or not x.is_integer()):
        return None
    return int(x) if abs(x) <= MAX_SAFE_INTEGER else None


def usage_problem(usage):
    """Receipts, usage: why `usage` (a dict with USAGE_KEYS) is not one a site may sign, or None."""
    source = usage.get("source")
    if source not in USAGE_SOURCES:
        return f"usage source {json.dumps(source, default=repr)} is not one of {', '.join(USAGE_SOURCES)}"
    for k in USAGE_FIGURES:
        n = _safe_integer(usage.get(k))
        if n is None or n < 0:
            return f"usage {k} must be a non-negative integer, got {usage.get(k)!r}"
    if usage["gpus"] > USAGE_GPUS_MAX:
        return f"usage gpus {usage['gpus']} is above {USAGE_GPUS_MAX}"
    jobs, reason = usage.get("jobs"), usage.get("reason")
    if not isinstance(jobs, str) or not _JOBS.fullmatch(jobs):
        return "usage jobs must be comma-separated job ids (letters, digits, _ . + -)"
    if not isinstance(reason, str) or any(not 0x20 <= ord(ch) <= 0x7E for ch in reason) or len(reason) > USAGE_REASON_MAX:
        return f"usage reason must be printable ASCII of at most {USAGE_REASON_MAX} characters"
    if source == "unknown":
        if reason.strip(" ") == "":
            return "unknown usage must say why"
        if any(usage[k] != 0 for k in USAGE_FIGURES) or jobs != "":
            return "unknown usage carries no figures"
        return None
    if reason != "":
        return "known usage carries no reason"
    if usage["trainingGpuMs"] > usage["allocatedGpuMs"]:
        return f"usage trainingGpuMs {usage['trainingGpuMs']} is above allocatedGpuMs {usage['allocatedGpuMs']}"
    if usage["allocatedGpuMs"] > usage["wallMs"] * usage["gpus"]:
        return f"usage allocatedGpuMs {usage['allocatedGpuMs']} is above wallMs × gpus ({usage['wallMs']} × {usage['gpus']})"
    return None


def usage_dict(usage):
    """A usage given as a dict (USAGE_KEYS) or a tuple in payload order, as a dict."""
    if isinstance(usage, dict):
        return dict(usage)
    if isinstance(usage, (tuple, list)) and len(usage) == len(USAGE_KEYS):
        return dict(zip(USAGE_KEYS, usage))
    raise ValueError(f"RangeError: receipt usage must be a dict or a tuple of {len(USAGE_KEYS)} values ({', '.join(USAGE_KEYS)})")


def unknown_usage(reason):
    """An `unknown` usage: every figure 0, no jobs, and why (printable ASCII, cut to USAGE_REASON_MAX)."""
    r = re.sub(r"[^\x20-\x7e]+", " ", reason).strip(" ") or "not measured"
    if len(r) > USAGE_REASON_MAX:
        r = r[: USAGE_REASON_MAX - 3] + "..."
    return {"source": "unknown", "gpus": 0, "wallMs": 0, "allocatedGpuMs": 0, "trainingGpuMs": 0, "jobs": "", "reason": r}


def parts_sha256(parts):
    """The SHA-256 a delta uploaded in parts is recorded under: of `<start>-<end> <sha256>\n` per part."""
    return hashlib.sha256("".join(f"{p['start']}-{p['end']} {p['sha256']}\n" for p in parts).encode("ascii")).hexdigest()


def delta_problem(delta):
    """Why a receipt may not name `delta` ({"sha256", "parts": [{"start", "end", "sha256"}]}), or None."""
    hex64 = re.compile(r"[0-9a-f]{64}")
    if not isinstance(delta.get("sha256"), str) or not hex64.fullmatch(delta["sha256"]):
        return f"delta SHA-256 {delta.get('sha256')!r} is not lowercase hex of 64 digits"
    at = 0
    for p in delta["parts"]:
        ok = all(isinstance(p[k], int) and not isinstance(p[k], bool) for k in ("start", "end")) and p["start"] == at and p["end"] > p["start"]
        if not ok:
            return f"delta part [{p['start']}, {p['end']}) does not follow byte {at}: the parts must tile the delta from byte 0"
        if not isinstance(p["sha256"], str) or not hex64.fullmatch(p["sha256"]):
            return f"delta part [{p['start']}, {p['end']}) has SHA-256 {p['sha256']!r}, not lowercase hex of 64 digits"
        at = p["end"]
    if delta["parts"] and parts_sha256(delta["parts"]) != delta["sha256"]:
        return f"delta SHA-256 {delta['sha256']} is not that of its parts, {parts_sha256(delta['parts'])}"
    return None


def receipt_payload(federation, run_id, round_, site, parent, model, manifest, usage=None, delta=None):
    """Receipts: the signed payload; printable ASCII fields without spaces, a positive round.

    Without `usage`: `fedhpc-receipt-v1` (receipts journaled before protocol version 6). With it
    (a dict or a tuple, see usage_dict): `fedhpc-receipt-v2`, the usage's lines after the manifest —
    source, gpus, wall ms, allocated GPU-ms, training GPU-ms, jobs, reason (the last, spaces allowed).
    With `delta` too (protocol version 12): `fedhpc-receipt-v3`, the delta's SHA-256 and its parts
    (`<start>-<end>:<sha256>`, comma-separated; an empty line for a delta uploaded whole) between
    the manifest and the usage.
    """
    if isinstance(round_, bool) or not isinstance(round_, int) or round_ < 1:
        raise ValueError(f"RangeError: round {round_!r} is not a positive integer")
    fields = [federation, run_id, str(round_), site, parent, model, manifest]
    for f in fields:
        if any(not 0x21 <= ord(ch) <= 0x7E for ch in f):
            raise ValueError(f"RangeError: receipt field {f!r} is not printable ASCII without spaces")
    if usage is None:
        if delta is not None:
            raise ValueError("RangeError: receipt names a delta without a usage: version 3 carries both")
        return ("fedhpc-receipt-v1\n" + "".join(f + "\n" for f in fields)).encode("ascii")
    u = usage_dict(usage)
    problem = usage_problem(u)
    if problem is not None:
        raise ValueError(f"RangeError: receipt {problem}")
    usage_lines = [u["source"]] + [str(_safe_integer(u[k])) for k in USAGE_FIGURES] + [u["jobs"], u["reason"]]
    if delta is None:
        return ("fedhpc-receipt-v2\n" + "".join(f + "\n" for f in fields + usage_lines)).encode("ascii")
    problem = delta_problem(delta)
    if problem is not None:
        raise ValueError(f"RangeError: receipt {problem}")
    parts = ",".join(f"{p['start']}-{p['end']}:{p['sha256']}" for p in delta["parts"])
    return ("fedhpc-receipt-v3\n" + "".join(f + "\n" for f in fields + [delta["sha256"], parts] + usage_lines)).encode("ascii")


# ----------------------------------------------------------------------------- canonical JSON

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif o < 0x20 or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def ecmascript_number(x):
    """Canonical JSON, a number: ECMAScript Number::toString (shortest round-trip digits)."""
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return "null"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    # repr gives the shortest digits that round-trip; value = digits × 10^exponent.
    _, digit_tuple, exponent = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    n = len(digits) + exponent  # value = 0.digits × 10^n
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        text = (digits[0] + ("." + digits[1:] if k > 1 else "")) + "e" + ("+" if e >= 0 else "-") + str(abs(e))
    return sign + text


def _utf16_key(s):
    return s.encode("utf-16-be", "surrogatepass")


def canonical_json(value):
    """Canonical JSON: keys sorted by UTF-16 code units, ECMAScript strings and numbers, no space."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return ecmascript_number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value.keys(), key=_utf16_key)
        return "{" + ",".join(_string(k) + ":" + canonical_json(value[k]) for k in keys) + "}"
    raise TypeError(f"not JSON: {value!r}")


def parse_json_as_ecmascript(text):
    """JSON.parse: every number a double (so 9007199254740993 reads as 9007199254740992)."""
    return json.loads(text, parse_int=float)


def canonical_sha256(value):
    return hashlib.sha256(canonical_json(value).encode("utf-8", "surrogatepass")).hexdigest()


GENESIS_HASH = "0" * 64


def record_hash(seq, ts, prev, body, term=None):
    """The journal hash chain: SHA-256 of the canonical JSON of {seq, ts, prev, term, body}; a record
    without a term (a state dir's journal) leaves it out, as canonical JSON leaves out undefined members."""
    record = {"seq": seq, "ts": ts, "prev": prev, "body": body}
    if term is not None:
        record["term"] = term
    return canonical_sha256(record)


def term_problem(before, record):
    """What is wrong with a record's term after the record before it (None: the first), or None.
    Term-less records first (an imported journal), then positive integer terms that never decrease."""
    term = record.get("term")
    if term is not None and not (isinstance(term, (int, float)) and not isinstance(term, bool) and term == int(term) and 0 < term <= 2**53 - 1):
        return "term is not a positive integer"
    last = before.get("term") if before is not None else None
    if last is None:
        return None
    if term is None:
        return "no term after a termed record"
    if term < last:
        return "term below the previous record's"
    return None


def verify_chain(records):
    """The first problem of a parsed chain as (index, why), or None: seq from 1, prev links, terms, hashes."""
    prev, before = GENESIS_HASH, None
    for i, r in enumerate(records):
        if r["seq"] != i + 1:
            return i, "seq"
        if r["prev"] != prev:
            return i, "prev"
        why = term_problem(before, r)
        if why:
            return i, why
        if record_hash(r["seq"], r["ts"], r["prev"], r["body"], r.get("term")) != r["hash"]:
            return i, "hash"
        prev, before = r["hash"], r
    return None


_RECORD_KEYS = {"seq", "ts", "prev", "hash", "term", "body"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _as_record(message):
    """A stream message (text) as a journal record, or None when it is none."""
    try:
        r = parse_json_as_ecmascript(message)
    except ValueError:
        return None
    if not isinstance(r, dict) or not set(r) <= _RECORD_KEYS:
        return None
    seq, ts, prev, digest, body = r.get("seq"), r.get("ts"), r.get("prev"), r.get("hash"), r.get("body")
    if not isinstance(seq, float) or seq != int(seq) or not 1 <= seq <= 2**53 - 1 or not isinstance(ts, float) or not math.isfinite(ts):
        return None
    if not isinstance(prev, str) or not _HEX64.match(prev) or not isinstance(digest, str) or not _HEX64.match(digest):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        return None
    return r


def chain_of(messages):
    """The chain rule of a replicated journal: in stream order, a message is on the chain iff it is a
    record whose seq is the head's + 1, whose prev is the head's hash, whose term is allowed after the
    head's and whose hash verifies. Returns (records on the chain, indexes of the messages ignored)."""
    chain, ignored = [], []
    for i, message in enumerate(messages):
        r = _as_record(message)
        head = chain[-1] if chain else None
        ok = (
            r is not None
            and r["seq"] == (head["seq"] if head else 0) + 1
            and r["prev"] == (head["hash"] if head else GENESIS_HASH)
            and term_problem(head, r) is None
            and record_hash(r["seq"], r["ts"], r["prev"], r["body"], r.get("term")) == r["hash"]
        )
        if ok:
            chain.append(r)
        else:
            ignored.append(i)
    return chain, ignored


# ----------------------------------------------------------------------------- safetensors


def safetensors_tensors(data):
    """The tensors of a safetensors file, in file order: [(name, dtype, shape)]."""
    if len(data) < 8:
        raise ValueError("not a safetensors file: shorter than its header length")
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    entries = [(k, v) for k, v in header.items() if k != "__metadata__"]
    entries.sort(key=lambda kv: kv[1]["data_offsets"][0])
    return [(k, v["dtype"], list(v["shape"])) for k, v in entries]
