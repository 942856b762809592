#!/usr/bin/python3
"""Checks every file of proto/vectors/ against the Python implementation in this folder.

Usage: /usr/bin/python3 test/interop/vectors_check.py [VECTOR_DIR]

Prints one line per file ("ok FILE (N checks)" or "FAIL FILE: what differs") and exits 1 when any
check fails, a file has no checker, or a checker has no file. Written from docs/protocol.md; the
vectors are the TypeScript implementation's, so a difference is a disagreement between the two.
"""

import hashlib
import json
import os
import sys

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fedhpc_fold as fold  # noqa: E402
import fedhpc_formats as fmt  # noqa: E402
import fedhpc_secagg as sa  # noqa: E402


class Failure(Exception):
    pass


class Checks:
    def __init__(self):
        self.count = 0

    def eq(self, got, want, what):
        self.count += 1
        if got != want:
            raise Failure(f"{what}: got {got!r}, want {want!r}")

    def code(self, fn, want, what):
        """`fn` must raise an error whose code (or RangeError text) is `want`."""
        self.count += 1
        try:
            fn()
        except sa.ProtocolError as e:
            if e.code == want:
                return
            raise Failure(f"{what}: refused with {e.code}, want {want}") from e
        except ValueError as e:
            if str(e).startswith(want):
                return
            raise Failure(f"{what}: refused with {e}, want {want}") from e
        raise Failure(f"{what}: accepted, want {want}")


def h(s):
    return bytes.fromhex(s)


def verify_p256(pem, signature, data):
    try:
        load_pem_public_key(pem.encode()).verify(h(signature) if isinstance(signature, str) else signature, data, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def field_value(f):
    if "text" in f:
        return f["text"]
    if "uint" in f:
        return f["uint"]
    return h(f["bytes"])


def check_encoded_fields(v, c):
    for case in v["cases"]:
        c.eq(sa.encode_fields(case["label"], [field_value(f) for f in case["fields"]]).hex(), case["encoded"], f"encoding of {case['label']}")
    for r in v["refused"]:
        c.code(lambda r=r: sa.encode_fields(r["label"], [field_value(f) for f in r["fields"]]), r["error"], f"refused {r['fields']}")


def check_x25519_hkdf(v, c):
    keys = v["keys"]
    for site in keys.values():
        for pair in site.values():
            c.eq(sa.x25519_public(h(pair["private"])).hex(), pair["public"], "public key")
    a, b = keys["site-a"], keys["site-b"]
    for which in ("c", "s"):
        c.eq(sa.shared_secret(h(a[which]["private"]), h(b[which]["public"])).hex(), v["agreements"][which], f"agreement {which} a→b")
        c.eq(sa.shared_secret(h(b[which]["private"]), h(a[which]["public"])).hex(), v["agreements"][which], f"agreement {which} b→a")
    ctx = v["context"]
    session = sa.session_id(ctx["run"], ctx["attempt"])
    c.eq(session, ctx["session"], "session id")
    p = v["pairwiseMaskSeed"]
    c.eq(sa.encode_fields(sa.PAIRWISE_MASK_SEED_LABEL, []).hex(), p["salt"], "pairwise salt")
    c.eq(sa.encode_fields(sa.PAIRWISE_MASK_SEED_LABEL, [session, ctx["round"], *sorted([p["siteA"], p["siteB"]])]).hex(), p["info"], "pairwise info")
    for x, y in ((p["siteA"], p["siteB"]), (p["siteB"], p["siteA"])):
        c.eq(sa.pairwise_mask_seed(h(v["agreements"]["s"]), session, ctx["round"], x, y).hex(), p["seed"], f"s_uv {x},{y}")
    c.eq([int(w) for w in sa.expand(h(p["seed"]), 0, len(p["maskWords32"]), 32)], p["maskWords32"], "mask words of s_uv")
    for k in v["shareEncryptionKeys"]:
        c.eq(sa.encode_fields(sa.SHARE_ENCRYPTION_LABEL, []).hex(), k["salt"], "share key salt")
        c.eq(sa.encode_fields(sa.SHARE_ENCRYPTION_LABEL, [session, ctx["round"], k["from"], k["to"]]).hex(), k["info"], "share key info")
        c.eq(sa.share_encryption_key(h(v["agreements"]["c"]), session, ctx["round"], k["from"], k["to"]).hex(), k["key"], f"share key {k['from']}→{k['to']}")
    for lo in v["lowOrderPublicKeys"]:
        c.code(lambda lo=lo: sa.shared_secret(h(a["s"]["private"]), h(lo["publicKey"])), lo["error"], f"low-order key {lo['publicKey']}")


def check_prg(v, c):
    seed = h(v["seed"])
    for case in v["cases"]:
        w = case["bits"] // 8
        block, skip = divmod(case["wordOffset"] * w, 16)
        c.eq(block.to_bytes(16, "big").hex(), case["iv"], "iv")
        c.eq(skip, case["skipBytes"], "skip")
        stream = sa.keystream(seed, case["wordOffset"] * w, case["count"] * w)
        c.eq(hashlib.sha256(stream).hexdigest(), case["sha256"], f"keystream of {case['count']} words from {case['wordOffset']}")
        c.eq(stream[: 8 * w].hex(), case["firstBytes"], "first bytes")
        words = sa.expand(seed, case["wordOffset"], case["count"], case["bits"])
        c.eq([int(x) for x in words[:8]], case["firstWords"], "first words")
        c.eq(hashlib.sha256(sa.words_bytes(words, case["bits"])).hexdigest(), case["sha256"], "words' bytes")


def check_shamir(v, c):
    c.eq(int(v["prime"], 16), sa.FIELD_PRIME, "prime")
    for sp in v["split"]:
        chunks = [h(x) for x in sp["coefficients"]]
        shares = sa.shamir_split(h(sp["secret"]), sp["threshold"], sp["count"], lambda n, it=iter(chunks): next(it))
        c.eq([{"x": x, "y": y.hex()} for x, y in shares], sp["shares"], f"split t={sp['threshold']}")
    for cb in v["combine"]:
        shares = [(s["x"], h(s["y"])) for s in cb["shares"]]
        if "error" in cb:
            c.code(lambda shares=shares, cb=cb: sa.shamir_combine(shares, cb["threshold"]), cb["error"], cb["name"])
        else:
            c.eq(sa.shamir_combine(shares, cb["threshold"]).hex(), cb["secret"], cb["name"])


def check_share_seal(v, c):
    p, s, r = v["payload"], v["seal"], v["refused"]
    c.eq(sa.encode_share_payload(p["x"], h(p["maskKeyShare"]), h(p["selfSeedShare"])).hex(), p["encoded"], "payload")
    ctx = s["context"]
    sealed = (ctx["run"], ctx["round"], ctx["from"], ctx["to"])
    c.eq(sa.share_aad(*sealed).hex(), s["aad"], "aad")
    c.eq(sa.seal_share(h(s["key"]), h(s["nonce"]), *sealed, h(p["encoded"])).hex(), s["ciphertextAndTag"], "sealed")
    x, mk, ss = sa.open_share(h(s["key"]), h(s["nonce"]), h(s["ciphertextAndTag"]), sealed, sealed)
    c.eq((x, mk.hex(), ss.hex()), (p["x"], p["maskKeyShare"], p["selfSeedShare"]), "opened")
    e = r["otherReceiver"]["expected"]
    c.code(lambda: sa.open_share(h(s["key"]), h(s["nonce"]), h(s["ciphertextAndTag"]), sealed, (e["run"], e["round"], e["from"], e["to"])), r["otherReceiver"]["error"], "other receiver")
    c.code(lambda: sa.open_share(h(s["key"]), h(s["nonce"]), h(r["flippedBit"]["ciphertextAndTag"]), sealed, sealed), r["flippedBit"]["error"], "flipped bit")
    for bad in (r["zeroX"], r["short"]):
        c.code(lambda bad=bad: sa.decode_share_payload(h(bad["encoded"])), bad["error"], bad["about"])


def check_signed_payloads(v, c):
    ad = v["advertisement"]
    data = sa.advertisement_bytes(ad["session"], ad["round"], ad["site"], h(ad["cPk"]), h(ad["sPk"]))
    c.eq(data.hex(), ad["bytes"], "advertisement bytes")
    c.eq(verify_p256(ad["signature"]["publicKeyPem"], ad["signature"]["signature"], data), True, "advertisement signature")
    for r in ad["refused"]:
        c.code(lambda r=r: sa.advertisement_bytes(ad["session"], ad["round"], ad["site"], h(r["cPk"]), h(r["sPk"])), r["error"], r["name"])
    sl = v["survivorList"]
    got = sa.survivor_list_bytes(sl["session"], sl["round"], sl["survivors"], sl["dropped"])
    c.eq(got.hex(), sl["bytes"], "survivor list bytes")
    c.eq(got.decode(), sl["text"], "survivor list text")


def _rounding_words(seed, offset, count):
    return sa.expand(seed, offset, count, 32)


def check_quantize_mask(v, c):
    for case in v["cases"]:
        p = case["params"]
        w = sa.encoded_weight(case["count"], case["maxSiteWeight"])
        c.eq(w, case["weight"], f"{case['name']}: weight")
        seed = h(case["roundingSeed"])
        n, off = len(case["values"]), case["wordOffset"]
        u = _rounding_words(seed, off, n)
        c.eq([int(x) for x in u], case["roundingWords"], f"{case['name']}: rounding words")
        q = sa.quantize(case["values"], p["clip"], p["quantBits"], w, u)
        c.eq([int(x) for x in q], case["quantized"], f"{case['name']}: quantized")
        pairwise = [(h(x["seed"]), x["sign"]) for x in case["masks"]["pairwise"]]
        for x in case["masks"]["pairwise"]:
            c.eq(x["sign"], 1 if case["site"] < x["peer"] else -1, f"{case['name']}: σ({case['site']}, {x['peer']})")
        masked = sa.mask_words(q, off, p["modulusBits"], h(case["masks"]["selfSeed"]), pairwise)
        c.eq([int(x) for x in masked], case["masked"], f"{case['name']}: masked")
        c.eq(sa.words_bytes(masked, p["modulusBits"]).hex(), case["maskedBytes"], f"{case['name']}: masked bytes")
        ww = case["weightWord"]
        uw = _rounding_words(seed, ww["elements"], 1)
        c.eq(int(uw[0]), ww["roundingWord"], f"{case['name']}: weight word's rounding word")
        qw = sa.quantize([w], 1.0, p["quantBits"], 1.0, uw)
        c.eq(int(qw[0]), ww["quantized"], f"{case['name']}: weight word")
        c.eq(int(sa.mask_words(qw, ww["elements"], p["modulusBits"], h(case["masks"]["selfSeed"]), pairwise)[0]), ww["masked"], f"{case['name']}: masked weight word")


def check_masked_sum(v, c):
    p = v["params"]
    bits, n_el = p["modulusBits"], v["elements"]
    mod = 1 << bits
    seeds = {tuple(sorted(x["sites"])): h(x["seed"]) for x in v["pairwiseSeeds"]}
    every = [s["site"] for s in v["sites"]]
    by_site = {s["site"]: s for s in v["sites"]}
    for s in v["sites"]:
        w = sa.encoded_weight(s["count"], v["maxSiteWeight"])
        c.eq(w, s["weight"], f"{s['site']}: weight")
        u = _rounding_words(h(s["roundingSeed"]), 0, n_el + 1)
        q = np.concatenate([sa.quantize(s["values"], p["clip"], p["quantBits"], w, u[:n_el]), sa.quantize([w], 1.0, p["quantBits"], 1.0, u[n_el:])])
        c.eq([int(x) for x in q], s["quantized"], f"{s['site']}: quantized")
        # Every site masks with every other: all three completed the share exchange (U2).
        pairwise = [(seeds[tuple(sorted([s["site"], o]))], 1 if s["site"] < o else -1) for o in every if o != s["site"]]
        c.eq([int(x) for x in sa.mask_words(q, 0, bits, h(s["selfSeed"]), pairwise)], s["masked"], f"{s['site']}: masked")
    total = np.zeros(n_el + 1, dtype=np.int64)
    for u in v["survivors"]:
        total = (total + np.asarray(by_site[u]["masked"], dtype=np.int64)) % mod
    c.eq([int(x) for x in total], v["sum"], "sum of the survivors' masked vectors")
    for u in v["survivors"]:
        total = (total - sa.expand(h(by_site[u]["selfSeed"]), 0, n_el + 1, bits).astype(np.int64)) % mod
    for d in v["dropped"]:
        for u in v["survivors"]:
            sign = 1 if u < d else -1
            total = (total - sign * sa.expand(seeds[tuple(sorted([u, d]))], 0, n_el + 1, bits).astype(np.int64)) % mod
    c.eq([int(x) for x in total], v["unmasked"], "unmasked sum")
    n = len(v["survivors"])
    z = sa.zero_level(p["quantBits"])
    decoded = [float((int(x) - n * z) * (p["clip"] / z)) for x in total[:n_el]]
    c.eq(decoded, v["decoded"], "decoded sum")
    c.eq(float((int(total[n_el]) - n * z) * (1.0 / z)), v["weightSum"], "decoded weight word")
    declared = 0.0
    for u in v["survivors"]:
        declared += by_site[u]["weight"]
    c.eq(declared, v["declaredWeightSum"], "declared Σw")
    tolerance = n / z + n * 2.0**-40
    c.eq(tolerance, v["weightSumTolerance"], "Σw tolerance n/Z + n·2^−40")
    c.eq(abs(v["weightSum"] - declared) <= tolerance, True, "Σw check")
    bound = declared * p["clip"] + n * p["clip"] / z + n * p["clip"] * 2.0**-40
    c.eq(bound, v["rangeBound"], "range bound Σw·c + n·c/Z + n·c·2^−40")
    c.eq(all(abs(x) <= bound for x in decoded), True, "range check")
    c.eq([float(np.float32(x / declared)) for x in decoded], v["mean"], "mean")


def check_graph(v, c):
    label = sa.NEIGHBOUR_GRAPH_LABEL.encode()
    c.eq(sa.hkdf32(h(v["seed"]), label, label).hex(), v["permutationKey"], "permutation key")
    for case in v["cases"]:
        g = sa.session_graph(case["sites"], h(v["seed"]), case["degree"])
        what = f"{len(case['sites'])} sites, degree {case['degree']}"
        c.eq((g.complete, g.degree), (case["complete"], case["effectiveDegree"]), f"{what}: kind and degree")
        if not case["complete"]:
            c.eq(g.ring, case["ring"], f"{what}: ring")
        for site, near in case["neighbours"].items():
            c.eq(g.neighbours(site), near, f"{what}: neighbours of {site}")


def _receipt(f):
    return fmt.receipt_payload(f["federation"], f["runId"], f["round"], f["site"], f["parentSha256"], f["modelSha256"], f["dataManifestSha256"], f.get("usage"), f.get("delta"))


def check_receipt(v, c):
    payload = _receipt(v["fields"])
    c.eq(payload.hex(), v["payload"], "payload")
    c.eq(payload.decode(), v["payloadText"], "payload text")
    c.eq(verify_p256(v["signature"]["publicKeyPem"], v["signature"]["signature"], payload), True, "signature")
    other = _receipt({**v["fields"], "round": v["fields"]["round"] + 1})
    c.eq(verify_p256(v["signature"]["publicKeyPem"], v["signature"]["signature"], other), False, "signature of another round")
    c.eq(_receipt(v["emptyManifest"]["fields"]).hex(), v["emptyManifest"]["payload"], "empty manifest")
    for r in v["refused"]:
        c.code(lambda r=r: _receipt(r["fields"]), r["error"], r["name"])
    # Version 2 (protocol version 6): the usage's seven lines after the manifest, the reason last.
    v2 = v["v2"]
    c.eq(sorted(case["fields"]["usage"]["source"] for case in v2["cases"]), sorted(fmt.USAGE_SOURCES), "v2: a case of every source")
    for case in v2["cases"]:
        f, what = case["fields"], f"v2 {case['name']}"
        u = f["usage"]
        payload = _receipt(f)
        c.eq(payload.hex(), case["payload"], f"{what}: payload")
        c.eq(payload.decode(), case["payloadText"], f"{what}: payload text")
        lines = [f["federation"], f["runId"], str(f["round"]), f["site"], f["parentSha256"], f["modelSha256"], f["dataManifestSha256"]]
        lines += [u["source"], str(u["gpus"]), str(u["wallMs"]), str(u["allocatedGpuMs"]), str(u["trainingGpuMs"]), u["jobs"], u["reason"]]
        c.eq(case["payloadText"], "fedhpc-receipt-v2\n" + "".join(x + "\n" for x in lines), f"{what}: written out from the page")
        as_tuple = tuple(u[k] for k in fmt.USAGE_KEYS)
        c.eq(fmt.receipt_payload(*lines[:2], f["round"], *lines[3:7], as_tuple).hex(), case["payload"], f"{what}: usage as a tuple")
        c.eq(_receipt({k: x for k, x in f.items() if k != "usage"}).decode().startswith("fedhpc-receipt-v1\n"), True, f"{what}: without usage, version 1")
    for r in v2["refused"]:
        c.code(lambda r=r: _receipt(r["fields"]), r["error"], f"v2 {r['name']}")
    # Version 3 (protocol version 12): the delta and its parts between the manifest and the usage.
    v3 = v["v3"]
    ph = v3["partsSha256"]
    c.eq("".join(f"{p['start']}-{p['end']} {p['sha256']}\n" for p in ph["parts"]), ph["text"], "v3: the parts' lines")
    c.eq(fmt.parts_sha256(ph["parts"]), ph["sha256"], "v3: partsSha256")
    for case in v3["cases"]:
        f, what = case["fields"], f"v3 {case['name']}"
        u, d = f["usage"], f["delta"]
        payload = _receipt(f)
        c.eq(payload.hex(), case["payload"], f"{what}: payload")
        lines = [f["federation"], f["runId"], str(f["round"]), f["site"], f["parentSha256"], f["modelSha256"], f["dataManifestSha256"]]
        lines += [d["sha256"], ",".join(f"{p['start']}-{p['end']}:{p['sha256']}" for p in d["parts"])]
        lines += [u["source"], str(u["gpus"]), str(u["wallMs"]), str(u["allocatedGpuMs"]), str(u["trainingGpuMs"]), u["jobs"], u["reason"]]
        c.eq(case["payloadText"], "fedhpc-receipt-v3\n" + "".join(x + "\n" for x in lines), f"{what}: written out from the page")
    for r in v3["refused"]:
        c.code(lambda r=r: _receipt(r["fields"]), r["error"], f"v3 {r['name']}")


def check_canonical_json(v, c):
    for case in v["cases"]:
        out = fmt.canonical_json(fmt.parse_json_as_ecmascript(case["input"]))
        c.eq(out, case["canonical"], case["name"])
        c.eq(hashlib.sha256(out.encode("utf-8")).hexdigest(), case["sha256"], f"{case['name']}: hash")


def check_journal(v, c):
    c.eq(v["genesis"], fmt.GENESIS_HASH, "genesis")
    prev = v["genesis"]
    for r in v["records"]:
        c.eq(r["prev"], prev, f"record {r['seq']}: prev")
        c.eq(fmt.canonical_json({"seq": r["seq"], "ts": r["ts"], "prev": r["prev"], "body": r["body"]}), r["canonical"], f"record {r['seq']}: canonical")
        c.eq(fmt.record_hash(r["seq"], r["ts"], r["prev"], r["body"]), r["hash"], f"record {r['seq']}: hash")
        prev = r["hash"]
    # Protocol version 7: records with the writer's leadership term, which is part of the hash input.
    for r in v["termed"]:
        c.eq(r["prev"], prev, f"termed record {r['seq']}: prev")
        c.eq(fmt.canonical_json({"seq": r["seq"], "ts": r["ts"], "prev": r["prev"], "term": r["term"], "body": r["body"]}), r["canonical"], f"termed record {r['seq']}: canonical")
        c.eq(fmt.record_hash(r["seq"], r["ts"], r["prev"], r["body"], r["term"]), r["hash"], f"termed record {r['seq']}: hash")
        prev = r["hash"]
    chain = v["records"] + v["termed"]
    c.eq(fmt.verify_chain(chain), None, "term-less records continued by termed ones verify")
    c.eq([r["hash"] for r in chain], v["chain"], "the chain")
    lower = dict(chain[-1], term=chain[-2]["term"] - 1)
    c.eq(fmt.verify_chain(chain[:-1] + [lower])[1], "term below the previous record's", "a decreasing term is refused")
    got, ignored = fmt.chain_of([m["message"] for m in v["stream"]])
    c.eq([r["hash"] for r in got], v["chain"], "the chain rule over the stream")
    c.eq([m["streamSeq"] - 1 for m in v["stream"] if not m["onChain"]], ignored, "the messages off the chain")


def check_wire_encodings(v, c):
    for x in v["crc32c"]:
        c.eq(fmt.crc32c(h(x["data"])), x["crc32c"], f"crc32c of {x['data'][:16]}…")
    bf = v["bf16"]
    c.eq([f"{fmt.f32_to_bf16(int(b, 16)):04x}" for b in bf["f32Bits"]], bf["bf16Bits"], "bf16")
    c.eq(fmt.encode_int8(np.asarray(v["int8"]["values"], dtype=np.float32)).hex(), v["int8"]["encoded"], "int8 blocks")
    layouts = v["layouts"]
    for case in layouts["cases"]:
        got = [{"index": i, "start": s, "end": e, "unit": u} for i, s, e, u in fmt.delta_segments(case["encoding"], layouts["tensors"])]
        c.eq(got, case["segments"], f"layout {case['encoding']}")


def check_folded_weight(v, c):
    for d in v["discount"]:
        c.eq(fold.discounted(d["count"], d["staleness"]), d["discounted"], f"discount {d['count']} at staleness {d['staleness']}")
    by_name = {}
    for case in v["cases"]:
        name = case["name"]
        by_name[name] = case
        fresh = (case["fresh"]["count"], case["fresh"]["staleness"])
        parts = [(p["count"], p["staleness"]) for p in case["folded"]]
        if "code" in case:
            c.code(lambda: fold.upload_weight(fresh, parts, case["maxSiteWeight"]), case["code"], name)
            continue
        w, f, s, scale = fold.upload_weight(fresh, parts, case["maxSiteWeight"])
        c.eq([w, f, s, scale], [case["weight"], case["freshCount"], case["discounted"], case["foldScale"]], f"{name}: W, F, S_i, λ")
        c.eq([si * scale for si in s], case["counts"], f"{name}: λ·S_i")
    m = v["mix"]
    w = by_name[m["weights"]]
    for kind, clip in (("secure", m["secure"]["clip"]), ("plain", None)):
        got = fold.mix(np.asarray(m["fresh"], dtype=np.float32), [np.asarray(p, dtype=np.float32) for p in m["parts"]], w["freshCount"], w["counts"], w["weight"], clip)
        c.eq([float(x) for x in got], m[kind]["mixed"], f"the {kind} mixed delta")


CHECKERS = {
    "encoded-fields.json": check_encoded_fields,
    "x25519-hkdf.json": check_x25519_hkdf,
    "prg.json": check_prg,
    "shamir.json": check_shamir,
    "share-seal.json": check_share_seal,
    "signed-payloads.json": check_signed_payloads,
    "quantize-mask.json": check_quantize_mask,
    "masked-sum.json": check_masked_sum,
    "graph.json": check_graph,
    "receipt.json": check_receipt,
    "canonical-json.json": check_canonical_json,
    "journal.json": check_journal,
    "wire-encodings.json": check_wire_encodings,
    "folded-weight.json": check_folded_weight,
}


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    vector_dir = argv[1] if len(argv) > 1 else os.path.join(root, "proto", "vectors")
    files = sorted(f for f in os.listdir(vector_dir) if f.endswith(".json"))
    failed = False
    for name in files:
        checker = CHECKERS.get(name)
        if checker is None:
            print(f"FAIL {name}: no Python checker for this vector file")
            failed = True
            continue
        with open(os.path.join(vector_dir, name), encoding="utf-8") as fh:
            v = json.load(fh)
        c = Checks()
        try:
            c.eq(v.get("protocolVersion"), fmt.PROTOCOL_VERSION, "protocolVersion (the agent speaks this one)")
            checker(v, c)
            print(f"ok {name} ({c.count} checks)")
        except Failure as e:
            print(f"FAIL {name}: {e}")
            failed = True
    for name in sorted(set(CHECKERS) - set(files)):
        print(f"FAIL {name}: checker without a vector file")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
