"""SecAgg+ derivations of the fedhpc protocol, written from docs/protocol.md ("Secure aggregation").

A second implementation: nothing here is taken from the TypeScript code. Every function cites the
section of docs/protocol.md it implements; proto/vectors/*.json check them (vectors_check.py).
Only the Python standard library, numpy and Debian's python3-cryptography are used.
"""

import hashlib
import json

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# "Encoded fields": the labels.
ADVERTISEMENT_LABEL = "fedhpc/secagg/v1/key-advertisement"
PAIRWISE_MASK_SEED_LABEL = "fedhpc/secagg/v1/pairwise-mask-seed"
SHARE_ENCRYPTION_LABEL = "fedhpc/secagg/v1/share-encryption"
SHARE_AAD_LABEL = "fedhpc/secagg/v1/share-aad"
SURVIVORS_LABEL = "fedhpc/secagg/v1/survivors"
NEIGHBOUR_GRAPH_LABEL = "fedhpc/secagg/v1/neighbour-graph"

MAX_SAFE_INTEGER = 2**53 - 1
FIELD_PRIME = 2**521 - 1
SHARE_Y_BYTES = 66
SHARE_PAYLOAD_BYTES = 4 + 2 * SHARE_Y_BYTES


class ProtocolError(Exception):
    """A refusal with the stable code docs/protocol.md names (KEY_INVALID, SHAMIR_*, SHARE_*, ...)."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


def session_id(run_id, attempt):
    """Conventions: the session id of an attempt."""
    return f"{run_id}/attempt-{attempt}"


# ----------------------------------------------------------------------------- encoded fields


def _field(tag, body):
    return bytes([tag]) + len(body).to_bytes(4, "big") + body


def encode_fields(label, fields):
    """Encoded fields: the label as a text field, then each field (str text, int integer, bytes)."""
    out = [_field(1, label.encode("utf-8"))]
    for f in fields:
        if isinstance(f, str):
            out.append(_field(1, f.encode("utf-8")))
        elif isinstance(f, bool) or not isinstance(f, (int, bytes, bytearray)):
            raise ProtocolError("INVALID_ARGUMENT", f"not a field: {f!r}")
        elif isinstance(f, int):
            if f < 0 or f > MAX_SAFE_INTEGER:
                raise ProtocolError("INVALID_ARGUMENT", f"integer field {f} outside [0, 2^53 - 1]")
            out.append(_field(2, f.to_bytes(8, "big")))
        else:
            out.append(_field(3, bytes(f)))
    return b"".join(out)


# ----------------------------------------------------------------------------- keys


def x25519_public(private):
    """The raw 32-byte public key of a raw 32-byte X25519 private key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = X25519PrivateKey.from_private_bytes(bytes(private))
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def shared_secret(private, peer_public):
    """Key agreement: X25519(own private, peer public); a low-order or rejected key is KEY_INVALID."""
    if len(peer_public) != 32:
        raise ProtocolError("KEY_INVALID", "a public key is 32 bytes")
    try:
        secret = X25519PrivateKey.from_private_bytes(bytes(private)).exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
    except ValueError as e:
        raise ProtocolError("KEY_INVALID", f"X25519 refused the peer key ({e})") from e
    if secret == bytes(32):
        raise ProtocolError("KEY_INVALID", "the shared secret is zero (a low-order point)")
    return secret


def hkdf32(ikm, salt, info):
    """HKDF-SHA256 (RFC 5869), 32 bytes of output."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(bytes(ikm))


def pairwise_mask_seed(secret, session, round_, site_a, site_b):
    """Key derivation: s_uv, symmetric (the two ids sorted)."""
    a, b = sorted([site_a, site_b])
    return hkdf32(secret, encode_fields(PAIRWISE_MASK_SEED_LABEL, []), encode_fields(PAIRWISE_MASK_SEED_LABEL, [session, round_, a, b]))


def share_encryption_key(secret, session, round_, sender, receiver):
    """Key derivation: the share key sender → receiver (directional)."""
    return hkdf32(secret, encode_fields(SHARE_ENCRYPTION_LABEL, []), encode_fields(SHARE_ENCRYPTION_LABEL, [session, round_, sender, receiver]))


# ----------------------------------------------------------------------------- mask expansion


def keystream(seed, start_byte, length):
    """Mask expansion: AES-256-CTR keystream bytes [start_byte, start_byte + length)."""
    block, skip = divmod(start_byte, 16)
    iv = block.to_bytes(16, "big")
    enc = Cipher(algorithms.AES(bytes(seed)), modes.CTR(iv)).encryptor()
    return (enc.update(bytes(skip + length)) + enc.finalize())[skip:]


def expand(seed, word_offset, count, bits):
    """Mask expansion: words word_offset … word_offset + count − 1 of PRG(seed) in Z_2^bits (LE)."""
    w = bits // 8
    data = keystream(seed, word_offset * w, count * w)
    return np.frombuffer(data, dtype="<u4" if bits == 32 else "<u2").copy()


# ----------------------------------------------------------------------------- Shamir


def shamir_split(secret, threshold, count, random_bytes):
    """Shamir sharing: shares x = 1 … count of f(x) = s + a1·x + …, y as 66 bytes BE."""
    s = int.from_bytes(secret, "big")
    coefficients = [s]
    while len(coefficients) < threshold:
        raw = bytearray(random_bytes(SHARE_Y_BYTES))
        raw[0] &= 0x01
        a = int.from_bytes(raw, "big")
        if a < FIELD_PRIME:
            coefficients.append(a)
    shares = []
    for x in range(1, count + 1):
        y = 0
        for a in reversed(coefficients):
            y = (y * x + a) % FIELD_PRIME
        shares.append((x, y.to_bytes(SHARE_Y_BYTES, "big")))
    return shares


def _lagrange_at(points, at):
    total = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (at - xj) % FIELD_PRIME
                den = den * (xi - xj) % FIELD_PRIME
        total = (total + yi * num * pow(den, -1, FIELD_PRIME)) % FIELD_PRIME
    return total


def shamir_combine(shares, threshold):
    """Shamir reconstruction at 0 from (x, y bytes) shares, with every refusal of the spec."""
    if len(shares) < threshold:
        raise ProtocolError("SHAMIR_TOO_FEW_SHARES", f"{len(shares)} shares, {threshold} needed")
    points = []
    for x, y in shares:
        if not 0 < x < 2**32 or len(y) != SHARE_Y_BYTES or int.from_bytes(y, "big") >= FIELD_PRIME:
            raise ProtocolError("SHAMIR_OUT_OF_FIELD", f"share x = {x} is not a point of the field")
        points.append((x, int.from_bytes(y, "big")))
    if len({x for x, _ in points}) != len(points):
        raise ProtocolError("SHAMIR_DUPLICATE_X", "two shares with one x")
    base = points[:threshold]
    for x, y in points[threshold:]:
        if _lagrange_at(base, x) != y:
            raise ProtocolError("SHAMIR_INCONSISTENT", f"share x = {x} is off the polynomial")
    secret = _lagrange_at(base, 0)
    if secret >= 2**256:
        raise ProtocolError("SHAMIR_INCONSISTENT", "the result is not a 256-bit secret")
    return secret.to_bytes(32, "big")


# ----------------------------------------------------------------------------- sealed shares


def encode_share_payload(x, mask_key_share, self_seed_share):
    """Sealed shares: x (4 bytes BE) ‖ share of s (66) ‖ share of b_u (66)."""
    return x.to_bytes(4, "big") + bytes(mask_key_share) + bytes(self_seed_share)


def decode_share_payload(data):
    if len(data) != SHARE_PAYLOAD_BYTES:
        raise ProtocolError("SHARE_MALFORMED", f"a share payload is {SHARE_PAYLOAD_BYTES} bytes, not {len(data)}")
    x = int.from_bytes(data[:4], "big")
    if x == 0:
        raise ProtocolError("SHARE_MALFORMED", "x = 0")
    return x, bytes(data[4:70]), bytes(data[70:136])


def share_aad(session, round_, sender, receiver):
    return encode_fields(SHARE_AAD_LABEL, [session, round_, sender, receiver])


def seal_share(key, nonce, session, round_, sender, receiver, payload):
    """Sealed shares: AES-256-GCM, the tag after the ciphertext."""
    return AESGCM(bytes(key)).encrypt(bytes(nonce), bytes(payload), share_aad(session, round_, sender, receiver))


def open_share(key, nonce, ciphertext_and_tag, sealed, expected):
    """Opens a share sealed for `sealed` (session, round, from, to) as the receiver `expected` sees it."""
    if tuple(sealed) != tuple(expected):
        raise ProtocolError("SHARE_CONTEXT_MISMATCH", f"a share for {sealed}, expected {expected}")
    from cryptography.exceptions import InvalidTag

    try:
        payload = AESGCM(bytes(key)).decrypt(bytes(nonce), bytes(ciphertext_and_tag), share_aad(*expected))
    except InvalidTag as e:
        raise ProtocolError("SHARE_AUTH_FAILED", "the share's tag does not verify") from e
    return decode_share_payload(payload)


# ----------------------------------------------------------------------------- signed payloads


def advertisement_bytes(session, round_, site, c_pk, s_pk):
    """Signed payloads: the advertisement's signed bytes; keys must be 32 bytes and differ."""
    if len(c_pk) != 32 or len(s_pk) != 32:
        raise ProtocolError("KEY_INVALID", "public keys are 32 bytes")
    if bytes(c_pk) == bytes(s_pk):
        raise ProtocolError("KEY_INVALID", "c and s public keys must differ")
    return encode_fields(ADVERTISEMENT_LABEL, [session, round_, site, bytes(c_pk), bytes(s_pk)])


def survivor_list_bytes(session, round_, survivors, dropped):
    """Signed payloads: the survivor list as JSON.stringify writes it, both lists sorted."""
    return json.dumps([SURVIVORS_LABEL, session, round_, sorted(survivors), sorted(dropped)], separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ----------------------------------------------------------------------------- the neighbour graph


def _ceil_log2(n):
    return max(0, (n - 1).bit_length())


class Graph:
    def __init__(self, complete, degree, ring, neighbours):
        self.complete = complete
        self.degree = degree
        self.ring = ring
        self._neighbours = neighbours

    def neighbours(self, site):
        return self._neighbours[site]


def session_graph(sites, seed, degree):
    """The neighbour graph over `sites` from its 32-byte seed and degree (0: the default)."""
    ids = sorted(sites)
    n = len(ids)
    if degree == 0:
        k = n - 1 if n <= 32 else 2 * _ceil_log2(n)
    else:
        if degree % 2 != 0 or degree < max(2, _ceil_log2(n)):
            raise ProtocolError("GRAPH_DEGREE", f"degree {degree} is not even and at least max(2, ceil(log2 {n}))")
        k = degree
    if k >= n - 1:
        return Graph(True, n - 1, [], {s: [x for x in ids if x != s] for s in ids})
    label = NEIGHBOUR_GRAPH_LABEL.encode("utf-8")
    key = hkdf32(seed, label, label)
    ring = list(ids)
    words = _word_source(key)
    for i in range(n - 1, 0, -1):
        m = i + 1
        limit = (2**32 // m) * m
        w = next(words)
        while w >= limit:
            w = next(words)
        j = w % m
        ring[i], ring[j] = ring[j], ring[i]
    near = {}
    for i, s in enumerate(ring):
        near[s] = sorted({ring[(i + d) % n] for d in range(1, k // 2 + 1)} | {ring[(i - d) % n] for d in range(1, k // 2 + 1)})
    return Graph(False, k, ring, near)


def _word_source(key):
    offset = 0
    while True:
        for w in expand(key, offset, 256, 32):
            yield int(w)
        offset += 256


# ----------------------------------------------------------------------------- quantization, masks


def encoded_weight(count, max_weight):
    """Quantization and the weight word: w = f32(n / M); a count above M or ≤ 0 is refused."""
    if not count > 0 or count > max_weight:
        raise ProtocolError("WEIGHT_OUT_OF_RANGE", f"count {count} outside (0, {max_weight}]")
    return float(np.float32(count / max_weight))


def zero_level(quant_bits):
    return 2 ** (quant_bits - 1) - 1


def quantize(values, clip, quant_bits, weight, rounding_words):
    """Quantization: v = Z + clamp(⌊(w·x')·(Z/c) + u/2^32⌋, −Z, Z), in float64 in that order."""
    z = zero_level(quant_bits)
    x = np.minimum(clip, np.maximum(-clip, np.asarray(values, dtype=np.float32).astype(np.float64)))
    t = (weight * x) * (z / clip)
    k = np.floor(t + np.asarray(rounding_words, dtype=np.float64) / 2.0**32)
    k = np.minimum(z, np.maximum(-z, k))
    return (z + k).astype(np.int64)


def mask_words(quantized, word_offset, bits, self_seed, pairwise):
    """Masking: y = v + PRG(b_u) + Σ σ·PRG(s_uv) mod 2^b; pairwise is [(seed, sign ±1)]."""
    n = len(quantized)
    mod = 1 << bits
    acc = np.asarray(quantized, dtype=np.int64) % mod
    acc = (acc + expand(self_seed, word_offset, n, bits).astype(np.int64)) % mod
    for seed, sign in pairwise:
        acc = (acc + sign * expand(seed, word_offset, n, bits).astype(np.int64)) % mod
    return acc.astype(np.uint32 if bits == 32 else np.uint16)


def words_bytes(words, bits):
    return np.asarray(words).astype("<u4" if bits == 32 else "<u2").tobytes()


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()
