/**
 * The protocol's test vectors (proto/vectors/, docs/protocol.md) are what a second implementation
 * tests itself against. They must be exactly what the TypeScript code derives today (a changed
 * derivation fails here until the vectors, docs/protocol.md and PROTOCOL_VERSION change with it),
 * and each file must be usable on its own: every case is recomputed here from the file's inputs,
 * where possible with node:crypto's primitives as the document describes them rather than with
 * the library's own helpers.
 */
import { crc32c } from '@node-rs/crc32';
import { createCipheriv, createHash, createPublicKey, hkdfSync, verify } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as aggregation from '../../../aggregation/index.js';
import * as encoding from '../../../aggregation/secagg/encoding.js';
import * as receipt from '../../../common/receipt.js';
import * as chainRule from '../../../coordinator/state/chain-rule.js';
import * as journal from '../../../coordinator/state/journal.js';
import { PROTOCOL_VERSION } from '../../../proto/index.js';
import { VECTORS, VECTOR_DIR, vectorFiles } from '../../../scripts/gen-vectors.mjs';

const ROOT = resolve(fileURLToPath(new URL('../../../', import.meta.url)));
const modules = { aggregation, encoding, receipt, journal, chainRule, crc32c, protocolVersion: PROTOCOL_VERSION };

type Vectors = typeof VECTORS;
/** A vector file as parsed: its header and what the generator derived for it. */
type VectorFile<K extends keyof Vectors> = ReturnType<Vectors[K]['derive']> & { readonly about: string; readonly spec: string; readonly protocolVersion: number };
const read = <K extends keyof Vectors>(name: K): VectorFile<K> => JSON.parse(readFileSync(join(ROOT, VECTOR_DIR, name), 'utf8')) as VectorFile<K>;
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const hex = (u: Uint8Array): string => Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('hex');
const sha256 = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex');
const hkdf = (ikm: string, salt: string, info: string): string => Buffer.from(hkdfSync('sha256', bytes(ikm), bytes(salt), bytes(info), 32)).toString('hex');

/** The code a throwing call ends with. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? (e as Error).name;
  }
  return 'no error';
}

/** The entry of `list` at `i`, which the test's own vector file holds. */
function at<T>(list: readonly T[], i: number): T {
  const x = list[i];
  if (x === undefined) throw new Error(`no entry ${i}`);
  return x;
}

/** A randomBytes that hands out `chunks` in order. */
function replay(chunks: readonly Uint8Array[]): (n: number) => Uint8Array {
  let i = 0;
  return (n) => {
    const next = chunks[i++];
    expect(next?.length).toBe(n);
    return next!;
  };
}

describe('protocol test vectors', () => {
  it('are checked in exactly as the TypeScript implementation derives them (npm run gen:vectors)', () => {
    const files = vectorFiles(modules);
    expect(readdirSync(join(ROOT, VECTOR_DIR)).sort()).toEqual([...files.keys()].sort());
    for (const [name, text] of files) expect(readFileSync(join(ROOT, VECTOR_DIR, name), 'utf8'), name).toBe(text);
  });

  it('each name the protocol version the code speaks', () => {
    for (const name of Object.keys(VECTORS) as (keyof Vectors)[]) expect(read(name).protocolVersion, name).toBe(PROTOCOL_VERSION);
  });

  it('encoded-fields: tag ‖ 4-byte big-endian length ‖ body for the label and each field', () => {
    const v = read('encoded-fields.json');
    for (const c of v.cases) {
      const fields = c.fields.map((f) => ('text' in f ? f.text : 'uint' in f ? f.uint : bytes(f.bytes)));
      expect(hex(encoding.encodeFields(c.label, fields))).toBe(c.encoded);
      // Written out from the rule, without the library.
      const part = (tag: number, body: Uint8Array): Buffer => {
        const head = Buffer.alloc(5);
        head.writeUInt8(tag, 0);
        head.writeUInt32BE(body.length, 1);
        return Buffer.concat([head, body]);
      };
      const u64 = (n: number): Buffer => {
        const b = Buffer.alloc(8);
        b.writeBigUInt64BE(BigInt(n));
        return b;
      };
      const parts = [part(1, Buffer.from(c.label, 'utf8')), ...fields.map((f) => (typeof f === 'string' ? part(1, Buffer.from(f, 'utf8')) : typeof f === 'number' ? part(2, u64(f)) : part(3, f)))];
      expect(Buffer.concat(parts).toString('hex')).toBe(c.encoded);
    }
    for (const r of v.refused) expect(codeOf(() => encoding.encodeFields(r.label, r.fields.map((f) => f.uint)))).toBe(r.error);
  });

  it('x25519-hkdf: keys → shared secrets → HKDF-SHA256 seeds and share keys → mask words; low-order keys refused', () => {
    const v = read('x25519-hkdf.json');
    const a = v.keys['site-a'];
    const b = v.keys['site-b'];
    for (const pair of [a.c, a.s, b.c, b.s]) {
      expect(hex(aggregation.exportX25519PublicKey(aggregation.importX25519PrivateKey(bytes(pair.private))))).toBe(pair.public);
    }
    for (const which of ['c', 's'] as const) {
      const ab = aggregation.sharedSecret(aggregation.importX25519PrivateKey(bytes(a[which].private)), bytes(b[which].public));
      const ba = aggregation.sharedSecret(aggregation.importX25519PrivateKey(bytes(b[which].private)), bytes(a[which].public));
      expect([hex(ab), hex(ba)]).toEqual([v.agreements[which], v.agreements[which]]);
    }
    const session = aggregation.secureSessionId(v.context.run, v.context.attempt);
    expect(session).toBe(v.context.session);
    const p = v.pairwiseMaskSeed;
    expect(hex(encoding.encodeFields(aggregation.PAIRWISE_MASK_SEED_LABEL, []))).toBe(p.salt);
    expect(hex(encoding.encodeFields(aggregation.PAIRWISE_MASK_SEED_LABEL, [session, v.context.round, ...[p.siteA, p.siteB].sort()]))).toBe(p.info);
    expect(hkdf(v.agreements.s, p.salt, p.info)).toBe(p.seed);
    for (const [x, y] of [[p.siteA, p.siteB], [p.siteB, p.siteA]] as const) {
      expect(hex(aggregation.derivePairwiseMaskSeed(bytes(v.agreements.s), { run: session, round: v.context.round, siteA: x, siteB: y }))).toBe(p.seed);
    }
    expect(Array.from(aggregation.expandMask(bytes(p.seed), 0, p.maskWords32.length, 32))).toEqual(p.maskWords32);
    for (const k of v.shareEncryptionKeys) {
      expect(hex(encoding.encodeFields(aggregation.SHARE_ENCRYPTION_LABEL, [session, v.context.round, k.from, k.to]))).toBe(k.info);
      expect(hkdf(v.agreements.c, k.salt, k.info)).toBe(k.key);
      expect(hex(aggregation.deriveShareEncryptionKey(bytes(v.agreements.c), { run: session, round: v.context.round, from: k.from, to: k.to }))).toBe(k.key);
    }
    expect(new Set(v.shareEncryptionKeys.map((k) => k.key)).size).toBe(2);
    const own = aggregation.importX25519PrivateKey(bytes(a.s.private));
    for (const lo of v.lowOrderPublicKeys) {
      expect(lo.error).toBe('KEY_INVALID');
      expect(codeOf(() => aggregation.sharedSecret(own, bytes(lo.publicKey))), lo.publicKey).toBe(lo.error);
    }
  });

  it('prg: AES-256-CTR with the block counter as IV, skipping to the word offset, words little-endian', () => {
    const v = read('prg.json');
    const seed = bytes(v.seed);
    for (const c of v.cases) {
      const w = c.bits / 8;
      const iv = Buffer.alloc(16);
      iv.writeBigUInt64BE(BigInt(Math.floor((c.wordOffset * w) / 16)), 8);
      expect(iv.toString('hex')).toBe(c.iv);
      expect((c.wordOffset * w) % 16).toBe(c.skipBytes);
      // node:crypto's AES-256-CTR over zeros, as the document describes it.
      const cipher = createCipheriv('aes-256-ctr', seed, iv);
      const stream = Buffer.concat([cipher.update(Buffer.alloc(c.skipBytes + c.count * w)), cipher.final()]).subarray(c.skipBytes);
      expect(sha256(stream)).toBe(c.sha256);
      expect(stream.subarray(0, 8 * w).toString('hex')).toBe(c.firstBytes);
      expect(Array.from({ length: 8 }, (_, i) => (w === 4 ? stream.readUInt32LE(4 * i) : stream.readUInt16LE(2 * i)))).toEqual(c.firstWords);
      const lib = aggregation.expandMask(seed, c.wordOffset, c.count, c.bits);
      expect(sha256(new Uint8Array(lib.buffer, lib.byteOffset, lib.byteLength))).toBe(c.sha256);
    }
    expect(v.cases.some((c) => c.skipBytes !== 0 && c.bits === 32)).toBe(true);
    expect(v.cases.some((c) => c.skipBytes !== 0 && c.bits === 16)).toBe(true);
  });

  it('shamir: shares are f(x) of the stated polynomial over 2^521 − 1; reconstructions and refusals', () => {
    const v = read('shamir.json');
    const p = BigInt(`0x${v.prime}`);
    expect(p).toBe(aggregation.FIELD_PRIME);
    expect(p).toBe(2n ** 521n - 1n);
    for (const sp of v.split) {
      const coefficients = [BigInt(`0x${sp.secret}`), ...sp.coefficients.map((c) => BigInt(`0x${c}`))];
      const shares = aggregation.split(bytes(sp.secret), sp.threshold, sp.count, replay(sp.coefficients.map(bytes)));
      expect(shares.map((x) => ({ x: x.x, y: hex(x.y) }))).toEqual(sp.shares);
      for (const share of sp.shares) {
        let y = 0n;
        for (let i = coefficients.length - 1; i >= 0; i--) y = (y * BigInt(share.x) + at(coefficients, i)) % p;
        expect(y.toString(16).padStart(132, '0')).toBe(share.y);
      }
    }
    expect(BigInt(`0x${at(at(v.split, 1).shares, 0).y}`)).toBe(p - 1n);
    for (const c of v.combine) {
      const r = aggregation.tryCombine(c.shares.map((x) => ({ x: x.x, y: bytes(x.y) })), { threshold: c.threshold });
      expect(r.ok ? { secret: hex(r.value) } : { error: r.code }, c.name).toEqual('secret' in c ? { secret: c.secret } : { error: c.error });
    }
    const refusals = v.combine.flatMap((c) => ('error' in c ? [c.error] : []));
    expect(new Set(refusals)).toEqual(new Set(['SHAMIR_TOO_FEW_SHARES', 'SHAMIR_DUPLICATE_X', 'SHAMIR_OUT_OF_FIELD', 'SHAMIR_INCONSISTENT']));
  });

  it('share-seal: the 136-byte payload, its AAD, and AES-256-GCM with the tag after the ciphertext', () => {
    const v = read('share-seal.json');
    const p = v.payload;
    expect(hex(aggregation.encodeSharePayload({ x: p.x, maskKeyShare: bytes(p.maskKeyShare), selfSeedShare: bytes(p.selfSeedShare) }))).toBe(p.encoded);
    expect(p.encoded).toBe(p.x.toString(16).padStart(8, '0') + p.maskKeyShare + p.selfSeedShare);
    const s = v.seal;
    expect(hex(aggregation.shareAssociatedData(s.context))).toBe(s.aad);
    expect(hex(encoding.encodeFields(aggregation.SHARE_AAD_LABEL, [s.context.run, s.context.round, s.context.from, s.context.to]))).toBe(s.aad);
    const cipher = createCipheriv('aes-256-gcm', bytes(s.key), bytes(s.nonce), { authTagLength: 16 });
    cipher.setAAD(bytes(s.aad));
    expect(Buffer.concat([cipher.update(bytes(p.encoded)), cipher.final(), cipher.getAuthTag()]).toString('hex')).toBe(s.ciphertextAndTag);
    const open = (wire: Uint8Array, expected: aggregation.ShareContext): string => {
      const r = aggregation.openShare(bytes(s.key), { context: s.context, nonce: bytes(s.nonce), ciphertext: wire.subarray(0, wire.length - 16), tag: wire.subarray(wire.length - 16) }, expected);
      return r.ok ? hex(r.value) : r.code;
    };
    expect(open(bytes(s.ciphertextAndTag), s.context)).toBe(p.encoded);
    const r = v.refused;
    expect(open(bytes(s.ciphertextAndTag), r.otherReceiver.expected)).toBe(r.otherReceiver.error);
    expect(open(bytes(r.flippedBit.ciphertextAndTag), s.context)).toBe(r.flippedBit.error);
    for (const bad of [r.zeroX, r.short]) {
      const d = aggregation.decodeSharePayload(bytes(bad.encoded));
      expect(d.ok ? 'ok' : d.code, bad.about).toBe(bad.error);
    }
  });

  it('signed-payloads: the advertisement and survivor list bytes, and a P-256 signature over the advertisement', () => {
    const v = read('signed-payloads.json');
    const ad = v.advertisement;
    const fields = { run: ad.session, round: ad.round, site: ad.site, cPk: bytes(ad.cPk), sPk: bytes(ad.sPk) };
    expect(hex(aggregation.encodeAdvertisement(fields))).toBe(ad.bytes);
    expect(hex(encoding.encodeFields(aggregation.ADVERTISEMENT_LABEL, [ad.session, ad.round, ad.site, bytes(ad.cPk), bytes(ad.sPk)]))).toBe(ad.bytes);
    expect(verify('sha256', bytes(ad.bytes), createPublicKey(ad.signature.publicKeyPem), bytes(ad.signature.signature))).toBe(true);
    for (const r of ad.refused) expect(codeOf(() => aggregation.encodeAdvertisement({ ...fields, cPk: bytes(r.cPk), sPk: bytes(r.sPk) })), r.name).toBe(r.error);
    const list = v.survivorList;
    const signed = aggregation.survivorListBytes(list.session, list.round, list.survivors, list.dropped);
    expect(hex(signed)).toBe(list.bytes);
    expect(Buffer.from(signed).toString('utf8')).toBe(list.text);
    expect(list.text).toBe(JSON.stringify([list.label, list.session, list.round, [...list.survivors].sort(), [...list.dropped].sort()]));
  });

  it('quantize-mask: v = Z + clamp(⌊w·clip(x)·(Z/c) + u/2^32⌋, −Z, Z), then masked; the weight word at the end', () => {
    const v = read('quantize-mask.json');
    for (const c of v.cases) {
      const weight = aggregation.encodedWeight(c.count, c.maxSiteWeight);
      expect(weight.ok && weight.value).toBe(c.weight);
      const seed = bytes(c.roundingSeed);
      const x = Float32Array.from(c.values);
      expect(Array.from(aggregation.expandMask(seed, c.wordOffset, x.length, 32))).toEqual(c.roundingWords);
      const Z = 2 ** (c.params.quantBits - 1) - 1;
      const byFormula = (xi: number, w: number, clip: number, u: number): number => {
        const clipped = Math.min(clip, Math.max(-clip, xi));
        return Z + Math.max(-Z, Math.min(Z, Math.floor(w * clipped * (Z / clip) + u / 2 ** 32)));
      };
      // Zero is a level: x = 0 gives the word Z whatever its rounding word.
      for (let i = 0; i < c.values.length; i++) if (c.values[i] === 0) expect(c.quantized[i]).toBe(Z);
      expect(Array.from(x, (xi, i) => byFormula(xi, c.weight, c.params.clip, at(c.roundingWords, i)))).toEqual(c.quantized);
      const quantized = aggregation.quantize(x, c.params, { weight: c.weight, wordOffset: c.wordOffset, roundingSeed: seed });
      expect(Array.from(quantized)).toEqual(c.quantized);
      const masks = { selfSeed: bytes(c.masks.selfSeed), pairwise: c.masks.pairwise.map((p) => ({ peer: p.peer, seed: bytes(p.seed), sign: p.sign })), wordOffset: c.wordOffset };
      const masked = aggregation.maskVector(quantized, masks);
      expect(Array.from(masked)).toEqual(c.masked);
      expect(hex(new Uint8Array(masked.buffer, masked.byteOffset, masked.byteLength))).toBe(c.maskedBytes);
      // The site's encoder makes the same words fused, without the quantized vector.
      expect(Array.from(aggregation.quantizeAndMask(x, c.params, { ...masks, weight: c.weight, roundingSeed: seed }))).toEqual(c.masked);
      // And the native masker, from the two models' bytes: a zero global model, so Δ is the values.
      if (aggregation.maskDeltaAvailable()) {
        const out = c.params.modulusBits === 32 ? new Uint32Array(x.length) : new Uint16Array(x.length);
        const sources = { local: new Uint8Array(x.buffer), localBf16: false, global: new Uint8Array(4 * x.length), globalBf16: false };
        expect(aggregation.maskDelta(sources, c.params, { ...masks, weight: c.weight, roundingSeed: seed }, out)).toBe(true);
        expect(Array.from(out)).toEqual(c.masked);
      }
      // The same words by hand: + PRG(b) and ± each pairwise PRG, at the element offset, mod 2^b.
      const mod = 2 ** c.params.modulusBits;
      const prg = (seedHex: string): number[] => Array.from(aggregation.expandMask(bytes(seedHex), c.wordOffset, x.length, c.params.modulusBits));
      const terms = [prg(c.masks.selfSeed), ...c.masks.pairwise.map((p) => prg(p.seed).map((w) => p.sign * w))];
      expect(c.quantized.map((q, i) => (((q + terms.reduce((acc, t) => acc + at(t, i), 0)) % mod) + mod) % mod)).toEqual(c.masked);
      const ww = c.weightWord;
      expect(aggregation.expandMask(seed, ww.elements, 1, 32)[0]).toBe(ww.roundingWord);
      expect(byFormula(c.weight, 1, 1, ww.roundingWord ?? Number.NaN)).toBe(ww.quantized);
      const word = aggregation.quantize(new Float32Array([c.weight]), { ...c.params, clip: 1 }, { wordOffset: ww.elements, roundingSeed: seed });
      expect(aggregation.maskVector(word, { ...masks, wordOffset: ww.elements })[0]).toBe(ww.masked);
    }
    const [whole, tail] = [at(v.cases, 0), at(v.cases, 1)];
    expect(tail.masked).toEqual(whole.masked.slice(tail.wordOffset));
    expect(tail.quantized).toEqual(whole.quantized.slice(tail.wordOffset));
  });

  it("masked-sum: pairwise masks cancel, the coordinator removes self masks and the dropped site's pairs, checks and divides", () => {
    const v = read('masked-sum.json');
    const q = v.params;
    const survivors = v.sites.filter((s) => v.survivors.includes(s.site));
    const sum = new Uint32Array(v.elements + 1);
    for (const s of survivors) aggregation.addModular(sum, Uint32Array.from(s.masked));
    expect(Array.from(sum)).toEqual(v.sum);
    const seedOf = (x: string, y: string): Uint8Array => bytes(v.pairwiseSeeds.find((p) => p.sites.includes(x) && p.sites.includes(y))?.seed ?? '');
    const dropped = at(v.dropped, 0);
    const unmasked = aggregation.unmaskSum(sum, {
      survivorSelfSeeds: survivors.map((s) => bytes(s.selfSeed)),
      droppedPairs: v.survivors.map((u) => ({ survivor: u, dropped, seed: seedOf(u, dropped) })),
    });
    expect(Array.from(unmasked)).toEqual(v.unmasked);
    // What is left is the survivors' quantized words added mod 2^32: every mask cancelled or removed.
    expect(v.unmasked).toEqual(v.unmasked.map((_, i) => survivors.reduce((acc, s) => acc + at(s.quantized, i), 0) % 2 ** 32));
    const decoded = aggregation.dequantizeSum(unmasked.subarray(0, v.elements), survivors.length, q);
    expect(Array.from(decoded)).toEqual(v.decoded);
    // The coordinator's fused unmask-and-decode gives the same values.
    const droppedPairs = v.survivors.map((u) => ({ survivor: u, dropped, seed: seedOf(u, dropped) }));
    const fused = aggregation.unmaskDequantize(sum.subarray(0, v.elements), survivors.length, q, { survivorSelfSeeds: survivors.map((s) => bytes(s.selfSeed)), droppedPairs });
    expect(Array.from(fused)).toEqual(v.decoded);
    // By hand: the offset n·Z leaves in integers, then one scaling by c/Z.
    const Z = 2 ** (q.quantBits - 1) - 1;
    expect(v.unmasked.slice(0, v.elements).map((w) => (w - survivors.length * Z) * (q.clip / Z))).toEqual(v.decoded);
    // A coordinate every survivor left at zero decodes to exactly 0.
    v.decoded.forEach((d, i) => {
      if (survivors.every((s) => at(s.values, i) === 0)) expect(d).toBe(0);
    });
    expect(survivors.every((s) => at(s.values, v.elements - 1) === 0)).toBe(true);
    expect(aggregation.dequantizeSum(unmasked.subarray(v.elements), survivors.length, { ...q, clip: 1 })[0]).toBe(v.weightSum);
    const checked = aggregation.checkWeightSum(v.weightSum, survivors.map((s) => s.weight), q.quantBits);
    expect(checked.ok && checked.value).toBe(v.declaredWeightSum);
    expect(aggregation.weightSumTolerance(survivors.length, q.quantBits)).toBe(v.weightSumTolerance);
    expect(aggregation.sumRangeBound(v.declaredWeightSum, survivors.length, q)).toBe(v.rangeBound);
    expect(aggregation.checkSumRange(v.decoded, v.rangeBound).ok).toBe(true);
    expect(v.decoded.map((d) => Math.fround(d / v.declaredWeightSum))).toEqual(v.mean);
    // Within the quantization bound of the weighted sum of clipped deltas.
    const bound = aggregation.quantizationErrorBound(survivors.length, q);
    v.decoded.forEach((d, i) => {
      const exact = survivors.reduce((acc, s) => acc + s.weight * Math.min(q.clip, Math.max(-q.clip, at(s.values, i))), 0);
      expect(Math.abs(d - exact)).toBeLessThan(bound);
    });
  });

  it('graph: the permutation key is HKDF(seed, label, label), the ring a Fisher–Yates shuffle, the graph H(k, n) over it', () => {
    const v = read('graph.json');
    const label = Buffer.from(aggregation.NEIGHBOUR_GRAPH_LABEL, 'utf8');
    expect(Buffer.from(hkdfSync('sha256', bytes(v.seed), label, label, 32)).toString('hex')).toBe(v.permutationKey);
    for (const c of v.cases) {
      const g = aggregation.sessionGraph(c.sites, bytes(v.seed), c.degree);
      expect([g.complete, g.degree]).toEqual([c.complete, c.effectiveDegree]);
      for (const [site, near] of Object.entries(c.neighbours)) expect(g.neighbours(site)).toEqual(near);
      if (c.complete) continue;
      expect([...c.ring].sort()).toEqual([...c.sites].sort());
      const n = c.ring.length;
      c.ring.forEach((site, i) => {
        const near: string[] = [];
        for (let d = 1; d <= c.effectiveDegree / 2; d++) near.push(at(c.ring, (i + d) % n), at(c.ring, (i - d + n) % n));
        expect(g.neighbours(site)).toEqual(near.sort());
      });
    }
    expect(v.cases.map((c) => c.complete)).toEqual([true, false, false]);
  });

  it('receipt: the version line and one field per line, signed with ECDSA P-256 / SHA-256', () => {
    const v = read('receipt.json');
    expect(receipt.receiptPayload(v.fields).toString('hex')).toBe(v.payload);
    const f = v.fields;
    expect(v.payloadText).toBe(`fedhpc-receipt-v1\n${[f.federation, f.runId, f.round, f.site, f.parentSha256, f.modelSha256, f.dataManifestSha256].join('\n')}\n`);
    const key = createPublicKey(v.signature.publicKeyPem);
    expect(receipt.verifyReceipt(v.fields, bytes(v.signature.signature), key)).toBe(true);
    expect(receipt.verifyReceipt({ ...v.fields, round: v.fields.round + 1 }, bytes(v.signature.signature), key)).toBe(false);
    expect(receipt.receiptPayload(v.emptyManifest.fields).toString('hex')).toBe(v.emptyManifest.payload);
    for (const r of v.refused) expect(codeOf(() => receipt.receiptPayload(r.fields)), r.name).toBe(r.error);
  });

  it('receipt v2 (protocol version 6): the usage\'s seven lines after the manifest, the reason last; the usages refused', () => {
    const v = read('receipt.json').v2;
    expect(v.cases.map((c) => c.fields.usage.source).sort()).toEqual(['slurm-sacct', 'unknown', 'wall-clock']);
    expect(v.cases.some((c) => c.fields.usage.source === 'unknown' && c.fields.usage.reason.includes(' '))).toBe(true);
    for (const c of v.cases) {
      const f = c.fields;
      const u = f.usage;
      expect(receipt.receiptPayload(f).toString('hex'), c.name).toBe(c.payload);
      expect(c.payloadText, c.name).toBe(
        `fedhpc-receipt-v2\n${[f.federation, f.runId, f.round, f.site, f.parentSha256, f.modelSha256, f.dataManifestSha256, u.source, u.gpus, u.wallMs, u.allocatedGpuMs, u.trainingGpuMs, u.jobs, u.reason].join('\n')}\n`,
      );
      expect(Buffer.from(c.payload, 'hex').toString('utf8'), c.name).toBe(c.payloadText);
      // The same fields without the usage are a version 1 payload (a receipt journaled before version 6).
      const { usage: _, ...v1 } = f;
      expect(receipt.receiptPayload(v1).toString('utf8').startsWith('fedhpc-receipt-v1\n'), c.name).toBe(true);
    }
    expect(v.refused.map((r) => r.name)).toEqual(expect.arrayContaining(['training above allocated', 'unknown with figures', 'a reason with a newline', 'a space in jobs']));
    for (const r of v.refused) expect(codeOf(() => receipt.receiptPayload(r.fields as unknown as receipt.ReceiptFields)), r.name).toBe(r.error);
  });

  it('canonical-json: each input gives its canonical text and hash; all but the lone surrogate are RFC 8785 cases', () => {
    const v = read('canonical-json.json');
    for (const c of v.cases) {
      const out = journal.canonicalJson(JSON.parse(c.input));
      expect(out, c.name).toBe(c.canonical);
      expect(sha256(out)).toBe(c.sha256);
    }
    expect(v.cases.filter((c) => !c.rfc8785).map((c) => c.name)).toEqual([expect.stringContaining('lone surrogate')]);
  });

  it('journal: hash = SHA-256(canonical JSON of seq, ts, prev, body), chained from 64 zeros', () => {
    const v = read('journal.json');
    expect(v.genesis).toBe(journal.GENESIS_HASH);
    const records = v.records.map((r) => ({ seq: r.seq, ts: r.ts, prev: r.prev, hash: r.hash, body: r.body as journal.JournalBody }));
    let prev = v.genesis;
    for (const r of records) {
      expect(r.prev).toBe(prev);
      expect(sha256(journal.canonicalJson({ seq: r.seq, ts: r.ts, prev: r.prev, body: r.body }))).toBe(r.hash);
      expect(journal.recordHash(r)).toBe(r.hash);
      prev = r.hash;
    }
    expect(v.records.map((r) => sha256(r.canonical))).toEqual(v.records.map((r) => r.hash));
    expect(journal.verifyChain(records)).toEqual({ ok: true, records: records.length });
  });

  it('journal (protocol version 7): a term is hashed with the record, the chain goes on from term-less records, and the chain rule reads a stream', () => {
    const v = read('journal.json');
    let prev = at(v.records, v.records.length - 1).hash;
    for (const r of v.termed) {
      expect(r.prev).toBe(prev);
      expect(r.term).toBeGreaterThan(0);
      expect(r.canonical).toBe(journal.canonicalJson({ seq: r.seq, ts: r.ts, prev: r.prev, term: r.term, body: r.body }));
      expect(sha256(r.canonical)).toBe(r.hash);
      prev = r.hash;
    }
    const chain = [...v.records, ...v.termed].map((r) => ({ seq: r.seq, ts: r.ts, prev: r.prev, term: r.term, hash: r.hash, body: r.body as journal.JournalBody }));
    expect(journal.verifyChain(chain)).toEqual({ ok: true, records: chain.length });
    expect(v.chain).toEqual(chain.map((r) => r.hash));
    const stream = chainRule.chainOf(v.stream.map((m) => ({ streamSeq: m.streamSeq, data: m.message })));
    expect(stream.records.map((r) => r.hash)).toEqual(v.chain);
    expect(v.stream.filter((m) => !m.onChain).map((m) => m.streamSeq)).toEqual(stream.ignored.map((m) => m.streamSeq));
    expect(v.stream.filter((m) => !m.onChain)).toHaveLength(4);
  });

  it("wire-encodings: CRC32C, bf16 rounding, int8 blocks and each encoding's byte layout", () => {
    const v = read('wire-encodings.json');
    for (const c of v.crc32c) expect(crc32c(Buffer.from(c.data, 'hex'))).toBe(c.crc32c);
    expect(at(v.crc32c, 0).crc32c).toBe(0xe3069283);
    const f32 = new Float32Array(Uint32Array.from(v.bf16.f32Bits, (b) => Number.parseInt(b, 16)).buffer);
    expect(Array.from(aggregation.f32ToBf16(f32), (b) => b.toString(16).padStart(4, '0'))).toEqual(v.bf16.bf16Bits);
    expect(hex(aggregation.encodeInt8Blocks(Float32Array.from(v.int8.values)))).toBe(v.int8.encoded);
    for (const c of v.layouts.cases) expect(aggregation.deltaSegments(c.encoding, v.layouts.tensors)).toEqual(c.segments);
  });

  it('folded-weight: ⌊k/(1+s)⌋ in integers, W = F + min(S, M − F), λ and λ·S_i, the refusals, and the mixed delta in float64 rounded once', () => {
    const v = read('folded-weight.json');
    for (const d of v.discount) {
      // Written out in integers (BigInt), as the page says; and the library.
      expect(d.discounted).toBe(Number(BigInt(d.count) / BigInt(1 + d.staleness)));
      expect(aggregation.discountedCount(d.count, d.staleness)).toBe(d.discounted);
    }
    for (const c of v.cases) {
      const r = aggregation.uploadWeight(c.fresh, c.folded, c.maxSiteWeight);
      const f = Number(BigInt(c.fresh.count) / BigInt(1 + c.fresh.staleness));
      if ('code' in c) {
        expect(r.ok ? 'accepted' : r.code, c.name).toBe(c.code);
        expect(f > 0 && f <= c.maxSiteWeight, c.name).toBe(false);
        continue;
      }
      expect(r.ok && { weight: r.value.weight, freshCount: r.value.fresh, discounted: r.value.folded, foldScale: r.value.foldScale }, c.name).toEqual({ weight: c.weight, freshCount: c.freshCount, discounted: c.discounted, foldScale: c.foldScale });
      const parts = c.folded.map((p) => Number(BigInt(p.count) / BigInt(1 + p.staleness)));
      const total = parts.reduce((a, b) => a + b, 0);
      const taken = Math.min(total, c.maxSiteWeight - f);
      expect([f, parts, f + taken, total === 0 ? 1 : taken / total], c.name).toEqual([c.freshCount, c.discounted, c.weight, c.foldScale]);
      expect(c.counts, c.name).toEqual(parts.map((p) => p * c.foldScale));
      expect(c.weight, c.name).toBeLessThanOrEqual(c.maxSiteWeight);
    }
    const w = v.cases.find((c) => c.name === v.mix.weights);
    if (!w || 'code' in w) throw new Error('the mix names no accepted case');
    const mix = (clip: number | undefined): number[] =>
      v.mix.fresh.map((x, j) => {
        const cl = (y: number): number => (clip === undefined ? y : Math.max(-clip, Math.min(clip, y)));
        let acc = w.freshCount * cl(x);
        v.mix.parts.forEach((p, i) => (acc += w.counts[i]! * cl(p[j]!)));
        return Math.fround(acc / w.weight);
      });
    expect(mix(v.mix.secure.clip)).toEqual(v.mix.secure.mixed);
    expect(mix(undefined)).toEqual(v.mix.plain.mixed);
    // The inputs are float32 values; a clipped mix stays within the clip.
    for (const x of [...v.mix.fresh, ...v.mix.parts.flat(), ...v.mix.secure.mixed, ...v.mix.plain.mixed]) expect(Math.fround(x)).toBe(x);
    for (const x of v.mix.secure.mixed) expect(Math.abs(x)).toBeLessThanOrEqual(v.mix.secure.clip);
  });
});
