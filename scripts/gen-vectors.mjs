// Writes the protocol's test vectors (proto/vectors/*.json) from the TypeScript implementation:
// known inputs and outputs of every derivation docs/protocol.md specifies, so a second
// implementation can test itself without a coordinator. Every input is fixed (bytes come from
// SHA-256 of a label), so the files are stable. `npm run gen:vectors` (after a build);
// test/unit/protocol/vectors.test.ts fails when a checked-in file differs from what the code
// derives now, and recomputes each case from the file's own inputs.
import { createHash, createHmac, createPublicKey, verify } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Where the vectors are checked in. */
export const VECTOR_DIR = 'proto/vectors';

/**
 * The implementation the vectors are derived from: the secure-aggregation library, the canonical
 * field encoding, the receipt payload, the journal's canonical JSON and chain rule, and CRC32C.
 * @typedef {{
 *   aggregation: typeof import('../aggregation/index.js'),
 *   encoding: typeof import('../aggregation/secagg/encoding.js'),
 *   receipt: typeof import('../common/receipt.js'),
 *   journal: typeof import('../coordinator/state/journal.js'),
 *   chainRule: typeof import('../coordinator/state/chain-rule.js'),
 *   crc32c: (data: Uint8Array) => number,
 *   protocolVersion: number,
 * }} VectorModules
 */

/**
 * A P-256 public key (test only; its private key was thrown away) and its signatures over two
 * payloads the vectors derive. When a payload changes, the generator stops: sign the new bytes
 * with a fresh test key and replace the key and both signatures here.
 */
const TEST_SIGNER = {
  publicKeyPem:
    '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMPXpdBp8ug5S2TB6lfva6X/NCUtM\npQxb3bUa2VicY0R+OxPkxsgPzna7NmtowOduwWPZaZKkj6om5K6wlh+h1g==\n-----END PUBLIC KEY-----\n',
  advertisement: '3046022100b919b4d3b81063ac0991ff38c8258939bf56e17403ffd38cd30ee47b651d6c74022100d80135be355622ef19e6f7d694a55525949d2b16cc6e835e083441d7a4a12dfc',
  receipt: '3045022100c325a5293c0cda385f62780a07306852f1b2e689977b382b67bcf22e7aba24db022058270a35889059a44fccd253d5615d3fbad6dd8fc06a051379bff8f57af42927',
};

/** @param {Uint8Array} u8 */
const hex = (u8) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('hex');
/** @param {string} h */
const bytes = (h) => new Uint8Array(Buffer.from(h, 'hex'));
/** @param {Uint8Array | string} data */
const sha256 = (data) => createHash('sha256').update(data).digest('hex');

/**
 * `n` fixed bytes named by `label`: SHA-256("fedhpc/vectors/<label>/<i>") for i = 0, 1, … concatenated.
 * @param {string} label
 * @param {number} n
 */
export function fixedBytes(label, n) {
  const out = new Uint8Array(n);
  for (let i = 0, at = 0; at < n; i++, at += 32) out.set(createHash('sha256').update(`fedhpc/vectors/${label}/${i}`).digest().subarray(0, Math.min(32, n - at)), at);
  return out;
}

/**
 * A `randomBytes` that hands out `chunks` in order (each call must ask for exactly the next one's length).
 * @param {readonly Uint8Array[]} chunks
 */
function replay(chunks) {
  let i = 0;
  return (/** @type {number} */ n) => {
    const next = chunks[i++];
    if (!next || next.length !== n) throw new Error(`replayed randomness: call ${i} asked for ${n} bytes`);
    return next;
  };
}

/**
 * The error code a throwing call ends with.
 * @param {() => unknown} fn
 */
function codeOf(fn) {
  try {
    fn();
  } catch (e) {
    return /** @type {{ code?: string }} */ (e).code ?? /** @type {Error} */ (e).name;
  }
  throw new Error('expected a refusal');
}

/**
 * A vector file's text: JSON, two-space indent, arrays of plain values on one line, and every
 * character a reader cannot see (DEL, C1, U+2028, U+2029) escaped, which parses to the same value.
 * @param {unknown} value
 */
const text = (value) => `${format(value, '')}\n`.replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/**
 * @param {unknown} value
 * @param {string} indent
 * @returns {string}
 */
function format(value, indent) {
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== 'object')) return `[${value.map((v) => JSON.stringify(v)).join(', ')}]`;
    return `[\n${value.map((v) => `${inner}${format(v, inner)}`).join(',\n')}\n${indent}]`;
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    if (entries.length === 0) return '{}';
    return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${format(v, inner)}`).join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(value);
}

/**
 * The vector files: what each covers, the section of docs/protocol.md that specifies it (its
 * anchor), and how it is derived.
 */
export const VECTORS = {
  'encoded-fields.json': { about: 'The length-prefixed field encoding under every label-bound byte string (HKDF salt and info, share AAD, the advertisement).', spec: 'encoded-fields', derive: encodedFields },
  'x25519-hkdf.json': { about: 'Key agreement and key derivation: fixed X25519 keys → shared secrets → pairwise mask seed and share keys (HKDF-SHA256) → the first mask words; low-order public keys are refused.', spec: 'key-agreement-and-key-derivation', derive: x25519 },
  'prg.json': { about: 'Mask expansion: AES-256-CTR keyed by a 32-byte seed, IV = the 16-byte big-endian block counter, keystream read as little-endian words; offsets on and off an AES block.', spec: 'mask-expansion', derive: prg },
  'shamir.json': { about: "Shamir sharing over p = 2^521 − 1: splits with fixed coefficients, reconstructions, a share at the field's edge, and every refusal.", spec: 'shamir-sharing', derive: shamir },
  'share-seal.json': { about: 'A share payload (x ‖ mask-key share ‖ self-seed share) sealed with AES-256-GCM for one neighbour, and the refusals of opening it.', spec: 'sealed-shares', derive: shareSeal },
  'signed-payloads.json': { about: 'The bytes sites sign: the key advertisement and the survivor list, with a P-256 signature over the advertisement.', spec: 'signed-payloads', derive: signedPayloads },
  'quantize-mask.json': { about: 'A delta chunk → clipped, weighted, quantized words (fixed rounding seed) → masked words, and the weight word; Z_2^32 and Z_2^16.', spec: 'quantization-and-the-weight-word', derive: quantizeMask },
  'masked-sum.json': { about: "Three sites, one dropped after the share exchange: the survivors' masked vectors, their modular sum, the unmasked sum, the checks and the mean.", spec: 'unmasking-and-the-checks-of-the-sum', derive: maskedSum },
  'graph.json': { about: 'The neighbour graph from its seed: complete, H(k, n) and the default degree, with the permutation ring.', spec: 'the-neighbour-graph', derive: graphs },
  'receipt.json': { about: "A receipt's fields → the signed payload, with a P-256 signature, and the payloads refused; version 2 (protocol version 6) adds the site's usage of the round, version 3 (protocol version 12) the delta and its parts' hashes.", spec: 'receipts', derive: receipts },
  'canonical-json.json': { about: "Canonical JSON (the journal's hash input): key order by UTF-16 code units, ECMAScript numbers and strings.", spec: 'canonical-json', derive: canonicalJson },
  'journal.json': {
    about: "A three-record journal: each record's canonical JSON and hash, chained from the genesis hash; continued by records with leadership terms (protocol version 7: the term is hashed); and a replicated journal's stream, read by the chain rule.",
    spec: 'the-journal-hash-chain',
    derive: journal,
  },
  'wire-encodings.json': { about: 'Delta wire encodings and checks: CRC32C, f32 → bf16, int8 blocks and the byte layout of every encoding.', spec: 'delta-encodings', derive: wireEncodings },
  'folded-weight.json': { about: "Folded work: the staleness discount ⌊k/(1+s)⌋, an upload's weight W = F + min(S, M − F) with λ and each part's count λ·S_i, the weights refused, and one mixed delta, clipped (secure) and not (plain).", spec: 'bases-staleness-and-folded-work', derive: foldedWeight },
};

/**
 * The checked-in files, by name: each file's header (what it covers, where it is specified, the
 * protocol version) and what it derives.
 * @param {VectorModules} m
 * @returns {Map<string, string>}
 */
export function vectorFiles(m) {
  /** @type {Map<string, string>} */
  const files = new Map();
  for (const [name, v] of Object.entries(VECTORS)) {
    files.set(name, text({ about: v.about, spec: `docs/protocol.md#${v.spec}`, protocolVersion: m.protocolVersion, ...v.derive(m) }));
  }
  return files;
}

/** @param {VectorModules} m */
function encodedFields(m) {
  const { encodeFields } = m.encoding;
  /** @type {{ label: string, fields: ({ text: string } | { uint: number } | { bytes: string })[] }[]} */
  const inputs = [
    { label: 'fedhpc/secagg/v1/pairwise-mask-seed', fields: [] },
    { label: 'example', fields: [{ text: 'run-1/attempt-3' }, { uint: 7 }, { text: 'site-a' }, { bytes: '00ff10' }] },
    { label: 'ünïcode', fields: [{ text: 'é😀' }, { uint: 2 ** 53 - 1 }, { bytes: '' }, { text: '' }] },
  ];
  return {
    rule: 'label and each field as tag (1 byte: 1 text, 2 unsigned integer, 3 bytes) ‖ length (4 bytes, big-endian) ‖ body; text is UTF-8, an integer is 8 bytes big-endian (0 ≤ n ≤ 2^53 − 1).',
    cases: inputs.map(({ label, fields }) => ({
      label,
      fields,
      encoded: hex(encodeFields(label, fields.map((f) => ('text' in f ? f.text : 'uint' in f ? f.uint : bytes(f.bytes))))),
    })),
    refused: [{ label: 'example', fields: [{ uint: -1 }], error: codeOf(() => encodeFields('example', [-1])) }, { label: 'example', fields: [{ uint: 2 ** 53 }], error: codeOf(() => encodeFields('example', [2 ** 53])) }],
  };
}

/** The context every vector of one attempt uses. */
const ATTEMPT = { run: 'run-1', attempt: 3, round: 7 };

/**
 * Fixed key pairs of a site: c (share encryption) and s (pairwise masks).
 * @param {VectorModules} m
 * @param {string} site
 */
function sitesKeys(m, site) {
  const { generateX25519KeyPair, exportX25519PrivateKey } = m.aggregation;
  const c = generateX25519KeyPair(() => fixedBytes(`${site}/c`, 32));
  const s = generateX25519KeyPair(() => fixedBytes(`${site}/s`, 32));
  const pair = (/** @type {import('../aggregation/index.js').X25519KeyPair} */ k) => ({ private: hex(exportX25519PrivateKey(k.privateKey)), public: hex(k.publicKey) });
  return { c, s, json: { c: pair(c), s: pair(s) } };
}

/** @param {VectorModules} m */
function x25519(m) {
  const a = m.aggregation;
  const { encodeFields } = m.encoding;
  const session = a.secureSessionId(ATTEMPT.run, ATTEMPT.attempt);
  const A = sitesKeys(m, 'site-a');
  const B = sitesKeys(m, 'site-b');
  const cShared = a.sharedSecret(A.c.privateKey, B.c.publicKey);
  const sShared = a.sharedSecret(B.s.privateKey, A.s.publicKey);
  if (hex(cShared) !== hex(a.sharedSecret(B.c.privateKey, A.c.publicKey))) throw new Error('X25519 is not symmetric');
  // The arguments in reverse order: the seed is the same, since the ids enter sorted.
  const seed = a.derivePairwiseMaskSeed(sShared, { run: session, round: ATTEMPT.round, siteA: 'site-b', siteB: 'site-a' });
  const mask = a.expandMask(seed, 0, 8, 32);
  const seedSalt = encodeFields(a.PAIRWISE_MASK_SEED_LABEL, []);
  const seedInfo = encodeFields(a.PAIRWISE_MASK_SEED_LABEL, [session, ATTEMPT.round, 'site-a', 'site-b']);
  if (hex(hkdfSha256(sShared, seedSalt, seedInfo)) !== hex(seed)) throw new Error('the pairwise seed is not HKDF-SHA256(shared, salt, info) as documented');
  const shareKey = (/** @type {string} */ from, /** @type {string} */ to) => {
    const salt = encodeFields(a.SHARE_ENCRYPTION_LABEL, []);
    const info = encodeFields(a.SHARE_ENCRYPTION_LABEL, [session, ATTEMPT.round, from, to]);
    const key = a.deriveShareEncryptionKey(cShared, { run: session, round: ATTEMPT.round, from, to });
    if (hex(hkdfSha256(cShared, salt, info)) !== hex(key)) throw new Error('the share key is not HKDF-SHA256(shared, salt, info) as documented');
    return { from, to, salt: hex(salt), info: hex(info), key: hex(key) };
  };
  const lowOrder = [
    '0000000000000000000000000000000000000000000000000000000000000000',
    '0100000000000000000000000000000000000000000000000000000000000000',
    'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
    '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    '0000000000000000000000000000000000000000000000000000000000000080',
  ];
  return {
    context: { ...ATTEMPT, session },
    keys: { 'site-a': A.json, 'site-b': B.json },
    agreements: { c: hex(cShared), s: hex(sShared) },
    pairwiseMaskSeed: {
      siteA: 'site-b',
      siteB: 'site-a',
      salt: hex(seedSalt),
      info: hex(seedInfo),
      seed: hex(seed),
      maskWords32: Array.from(mask),
    },
    shareEncryptionKeys: [shareKey('site-a', 'site-b'), shareKey('site-b', 'site-a')],
    lowOrderPublicKeys: lowOrder.map((publicKey) => ({ publicKey, error: codeOf(() => a.sharedSecret(A.s.privateKey, bytes(publicKey))) })),
  };
}

/** @param {VectorModules} m */
function prg(m) {
  const { expandMask } = m.aggregation;
  const seed = fixedBytes('prg/seed', 32);
  /** @type {[32 | 16, number, number][]} */
  const shapes = [
    [32, 0, 8],
    [32, 1, 8],
    [32, 5, 8],
    [16, 3, 8],
    [16, 7, 8],
    [32, 3, 300_000],
    [16, 9, 200_001],
  ];
  return {
    seed: hex(seed),
    cases: shapes.map(([bits, wordOffset, count]) => {
      const w = bits / 8;
      const words = expandMask(seed, wordOffset, count, bits);
      const raw = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
      const iv = Buffer.alloc(16);
      iv.writeBigUInt64BE(BigInt(Math.floor((wordOffset * w) / 16)), 8);
      return {
        bits,
        wordOffset,
        count,
        iv: iv.toString('hex'),
        skipBytes: (wordOffset * w) % 16,
        firstWords: Array.from(words.subarray(0, 8)),
        firstBytes: hex(raw.subarray(0, 8 * w)),
        sha256: sha256(raw),
      };
    }),
  };
}

/** @param {VectorModules} m */
function shamir(m) {
  const a = m.aggregation;
  const p = a.FIELD_PRIME;
  const toBytes = (/** @type {bigint} */ v) => bytes(v.toString(16).padStart(132, '0'));
  const secret = fixedBytes('shamir/secret', 32);
  const s = BigInt(`0x${hex(secret)}`);
  // A coefficient is 66 random bytes with all but the lowest bit of the first cleared (521 bits).
  const coefficients = [fixedBytes('shamir/a1', 66), fixedBytes('shamir/a2', 66)].map((c) => c.map((b, i) => (i === 0 ? b & 0x01 : b)));
  const shares = a.split(secret, 3, 5, replay(coefficients)).map((x) => ({ x: x.x, y: hex(x.y) }));
  // t = 2 with a1 = p − 1 − s: the share at x = 1 is p − 1, the largest field element.
  const edgeCoefficient = toBytes(p - 1n - s);
  const edge = a.split(secret, 2, 3, replay([edgeCoefficient])).map((x) => ({ x: x.x, y: hex(x.y) }));
  const pick = (/** @type {number[]} */ xs) => xs.map((x) => shares[x - 1]).filter((x) => x !== undefined);
  const combine = (/** @type {{ x: number, y: string }[]} */ set, /** @type {number} */ threshold) => {
    const r = a.tryCombine(set.map((x) => ({ x: x.x, y: bytes(x.y) })), { threshold });
    return r.ok ? { secret: hex(r.value) } : { error: r.code };
  };
  const forged = (/** @type {{ x: number, y: string }} */ share) => ({ x: share.x, y: hex(toBytes((BigInt(`0x${share.y}`) + 1n) % p)) });
  /** @type {{ name: string, threshold: number, shares: { x: number, y: string }[] }[]} */
  const sets = [
    { name: 'any t shares', threshold: 3, shares: pick([1, 3, 5]) },
    { name: 'another t shares, in any order', threshold: 3, shares: pick([4, 2, 1]) },
    { name: 'more than t consistent shares', threshold: 3, shares: pick([1, 2, 3, 4, 5]) },
    { name: 'the share at the field\'s edge (y = p − 1)', threshold: 2, shares: [edge[0], edge[1]].filter((x) => x !== undefined) },
    { name: 'fewer than t', threshold: 3, shares: pick([2, 5]) },
    { name: 'two shares with one x', threshold: 3, shares: [...pick([1, 2]), { x: 1, y: shares[0]?.y ?? '' }] },
    { name: 'y = p is not a field element', threshold: 2, shares: [{ x: 1, y: hex(toBytes(p)) }, edge[1] ?? { x: 0, y: '' }] },
    { name: 'x = 0 is the secret itself, never a share', threshold: 2, shares: [{ x: 0, y: hex(toBytes(s)) }, edge[1] ?? { x: 0, y: '' }] },
    { name: 'a share beyond t off the polynomial', threshold: 3, shares: [...pick([1, 2, 3]), forged(shares[3] ?? { x: 0, y: '' })] },
    { name: 't shares, one forged: the result is not a 256-bit secret', threshold: 3, shares: [...pick([1, 2]), forged(shares[2] ?? { x: 0, y: '' })] },
  ];
  return {
    prime: hex(toBytes(p)),
    secretBytes: a.SHAMIR_SECRET_BYTES,
    shareBytes: a.SHAMIR_SHARE_BYTES,
    split: [
      { secret: hex(secret), threshold: 3, count: 5, coefficients: coefficients.map(hex), shares },
      { secret: hex(secret), threshold: 2, count: 3, coefficients: [hex(edgeCoefficient)], shares: edge },
    ],
    combine: sets.map(({ name, threshold, shares: set }) => ({ name, threshold, shares: set, ...combine(set, threshold) })),
  };
}

/** @param {VectorModules} m */
function shareSeal(m) {
  const a = m.aggregation;
  const session = a.secureSessionId(ATTEMPT.run, ATTEMPT.attempt);
  const context = { run: session, round: ATTEMPT.round, from: 'site-a', to: 'site-b' };
  const payload = { x: 2, maskKeyShare: fixedBytes('seal/mask-key-share', 66), selfSeedShare: fixedBytes('seal/self-seed-share', 66) };
  payload.maskKeyShare[0] = 0x01;
  payload.selfSeedShare[0] = 0x00;
  const key = fixedBytes('seal/key', 32);
  const nonce = fixedBytes('seal/nonce', 12);
  const encoded = a.encodeSharePayload(payload);
  const sealed = a.sealShare(key, context, encoded, () => nonce);
  const wire = new Uint8Array([...sealed.ciphertext, ...sealed.tag]);
  const tampered = sealed.ciphertext.slice();
  tampered[0] = (tampered[0] ?? 0) ^ 1;
  const open = (/** @type {import('../aggregation/index.js').SealedShare} */ s, /** @type {typeof context} */ expected) => {
    const r = a.openShare(key, s, expected);
    return r.ok ? hex(r.value) : r.code;
  };
  const zeroX = encoded.slice();
  zeroX.set([0, 0, 0, 0], 0);
  const decode = (/** @type {Uint8Array} */ b) => {
    const r = a.decodeSharePayload(b);
    return r.ok ? 'ok' : r.code;
  };
  return {
    payload: { x: payload.x, maskKeyShare: hex(payload.maskKeyShare), selfSeedShare: hex(payload.selfSeedShare), encoded: hex(encoded) },
    seal: {
      context,
      key: hex(key),
      nonce: hex(nonce),
      aad: hex(a.shareAssociatedData(context)),
      ciphertextAndTag: hex(wire),
    },
    refused: {
      otherReceiver: { about: 'opened by a receiver the sealed context does not name', expected: { ...context, to: 'site-c' }, error: open(sealed, { ...context, to: 'site-c' }) },
      flippedBit: { about: 'one ciphertext bit flipped', ciphertextAndTag: hex(new Uint8Array([...tampered, ...sealed.tag])), error: open({ ...sealed, ciphertext: tampered }, context) },
      zeroX: { about: 'a payload with x = 0', encoded: hex(zeroX), error: decode(zeroX) },
      short: { about: 'a payload one byte short', encoded: hex(encoded.subarray(1)), error: decode(encoded.subarray(1)) },
    },
  };
}

/**
 * Checks a fixed test signature over `payload`, or stops with what to do.
 * @param {Uint8Array} payload
 * @param {'advertisement' | 'receipt'} which
 */
function testSignature(payload, which) {
  const signature = TEST_SIGNER[which];
  const key = createPublicKey(TEST_SIGNER.publicKeyPem);
  if (signature === '' || !verify('sha256', payload, key, Buffer.from(signature, 'hex'))) {
    throw new Error(`the ${which} payload changed (${hex(payload)}): sign it with a fresh P-256 test key and replace TEST_SIGNER in scripts/gen-vectors.mjs`);
  }
  return { algorithm: 'ECDSA P-256, SHA-256, DER signature', publicKeyPem: TEST_SIGNER.publicKeyPem, signature };
}

/** @param {VectorModules} m */
function signedPayloads(m) {
  const a = m.aggregation;
  const session = a.secureSessionId(ATTEMPT.run, ATTEMPT.attempt);
  const A = sitesKeys(m, 'site-a');
  const ad = { run: session, round: ATTEMPT.round, site: 'site-a', cPk: A.c.publicKey, sPk: A.s.publicKey };
  const adBytes = a.encodeAdvertisement(ad);
  const survivors = ['site-c', 'site-a', 'site-10', 'site-2'];
  const dropped = ['site-b', 'site-1'];
  const list = a.survivorListBytes(session, ATTEMPT.round, survivors, dropped);
  return {
    advertisement: {
      label: a.ADVERTISEMENT_LABEL,
      session,
      round: ad.round,
      site: ad.site,
      cPk: hex(ad.cPk),
      sPk: hex(ad.sPk),
      bytes: hex(adBytes),
      signature: testSignature(adBytes, 'advertisement'),
      refused: [
        { name: 'cPk equals sPk', cPk: hex(ad.cPk), sPk: hex(ad.cPk), error: codeOf(() => a.encodeAdvertisement({ ...ad, sPk: ad.cPk })) },
        { name: 'a 31-byte key', cPk: hex(ad.cPk.subarray(1)), sPk: hex(ad.sPk), error: codeOf(() => a.encodeAdvertisement({ ...ad, cPk: ad.cPk.subarray(1) })) },
      ],
    },
    survivorList: {
      label: 'fedhpc/secagg/v1/survivors',
      session,
      round: ATTEMPT.round,
      survivors,
      dropped,
      text: Buffer.from(list).toString('utf8'),
      bytes: hex(list),
    },
  };
}

/**
 * A quantized and masked chunk as a site's encoder makes it.
 * @param {VectorModules} m
 * @param {{ name: string, params: { clip: number, quantBits: number, modulusBits: 16 | 32 }, count: number, maxSiteWeight: number, values: number[], wordOffset: number, elements: number, seedLabel: string }} c
 */
function maskedChunk(m, c) {
  const a = m.aggregation;
  const weighted = a.encodedWeight(c.count, c.maxSiteWeight);
  if (!weighted.ok) throw new Error(weighted.issues.join('; '));
  const weight = weighted.value;
  const roundingSeed = fixedBytes(`${c.seedLabel}/rounding`, 32);
  const selfSeed = fixedBytes(`${c.seedLabel}/self`, 32);
  /** @type {{ peer: string, seed: Uint8Array, sign: 1 | -1 }[]} */
  const pairwise = [
    { peer: 'site-0', seed: fixedBytes(`${c.seedLabel}/pair-0`, 32), sign: a.pairwiseSign('site-b', 'site-0') },
    { peer: 'site-c', seed: fixedBytes(`${c.seedLabel}/pair-c`, 32), sign: a.pairwiseSign('site-b', 'site-c') },
  ];
  const x = Float32Array.from(c.values);
  const quantized = a.quantize(x, c.params, { weight, wordOffset: c.wordOffset, roundingSeed });
  const masked = a.maskVector(quantized, { selfSeed, pairwise, wordOffset: c.wordOffset });
  const weightParams = { ...c.params, clip: 1 };
  const weightWord = a.quantize(new Float32Array([weight]), weightParams, { wordOffset: c.elements, roundingSeed });
  const weightMasked = a.maskVector(weightWord, { selfSeed, pairwise, wordOffset: c.elements });
  return {
    name: c.name,
    site: 'site-b',
    params: c.params,
    count: c.count,
    maxSiteWeight: c.maxSiteWeight,
    weight,
    wordOffset: c.wordOffset,
    values: Array.from(x),
    roundingSeed: hex(roundingSeed),
    roundingWords: Array.from(a.expandMask(roundingSeed, c.wordOffset, x.length, 32)),
    quantized: Array.from(quantized),
    masks: { selfSeed: hex(selfSeed), pairwise: pairwise.map((p) => ({ peer: p.peer, seed: hex(p.seed), sign: p.sign })) },
    masked: Array.from(masked),
    maskedBytes: hex(new Uint8Array(masked.buffer, masked.byteOffset, masked.byteLength)),
    weightWord: {
      elements: c.elements,
      roundingWord: a.expandMask(roundingSeed, c.elements, 1, 32)[0],
      quantized: weightWord[0],
      masked: weightMasked[0],
    },
  };
}

/** @param {VectorModules} m */
function quantizeMask(m) {
  const values32 = [0, 0.25, -0.25, 0.5, -0.5, 1.5, -3, 1e-7, -1e-7, 0.1234567, 0.49999997, -0.3];
  const values16 = [0, 1e-3, -1e-3, 2e-3, -2e-3, 5e-3, -7e-4, 1.5e-4];
  return {
    cases: [
      maskedChunk(m, { name: 'secagg32: q = 24, c = 0.5, weight 300/480', params: { clip: 0.5, quantBits: 24, modulusBits: 32 }, count: 300, maxSiteWeight: 480, values: values32, wordOffset: 0, elements: values32.length, seedLabel: 'quantize/32' }),
      maskedChunk(m, { name: 'the same delta\'s chunk from element 5: rounding and mask words are taken at the element offset', params: { clip: 0.5, quantBits: 24, modulusBits: 32 }, count: 300, maxSiteWeight: 480, values: values32.slice(5), wordOffset: 5, elements: values32.length, seedLabel: 'quantize/32' }),
      maskedChunk(m, { name: 'secagg16: q = 12, c = 0.002, weight 1 (count = maxSiteWeight)', params: { clip: 0.002, quantBits: 12, modulusBits: 16 }, count: 12_800, maxSiteWeight: 12_800, values: values16, wordOffset: 0, elements: values16.length, seedLabel: 'quantize/16' }),
    ],
  };
}

/** @param {VectorModules} m */
function maskedSum(m) {
  const a = m.aggregation;
  const params = /** @type {const} */ ({ clip: 1, quantBits: 24, modulusBits: 32 });
  const maxSiteWeight = 1000;
  const sites = /** @type {const} */ (['site-a', 'site-b', 'site-c']);
  const dropped = 'site-b';
  const survivors = ['site-a', 'site-c'];
  /** @type {Record<string, number[]>} */
  // The last coordinate is zero at both survivors: it decodes to exactly 0 (zero is a level).
  const values = { 'site-a': [0.5, -0.25, 2, 0.001, 0], 'site-b': [0.1, 0.1, 0.1, 0.1, 0.1], 'site-c': [-0.125, 0.75, -0.5, 0, 0] };
  /** @type {Record<string, number>} */
  const counts = { 'site-a': 250, 'site-b': 400, 'site-c': 1000 };
  const elements = 5;
  const pairSeed = (/** @type {string} */ u, /** @type {string} */ v) => fixedBytes(`sum/pair/${[u, v].sort().join('+')}`, 32);
  const site = (/** @type {string} */ u) => {
    const w = a.encodedWeight(counts[u] ?? 0, maxSiteWeight);
    if (!w.ok) throw new Error(w.issues.join('; '));
    const selfSeed = fixedBytes(`sum/self/${u}`, 32);
    const roundingSeed = fixedBytes(`sum/rounding/${u}`, 32);
    /** @type {{ peer: string, seed: Uint8Array, sign: 1 | -1 }[]} */
    const pairwise = sites.filter((v) => v !== u).map((v) => ({ peer: v, seed: pairSeed(u, v), sign: a.pairwiseSign(u, v) }));
    const x = Float32Array.from(values[u] ?? []);
    const words = new Uint32Array(elements + 1);
    words.set(a.quantize(x, params, { weight: w.value, roundingSeed }));
    words.set(a.quantize(new Float32Array([w.value]), { ...params, clip: 1 }, { wordOffset: elements, roundingSeed }), elements);
    const masked = /** @type {Uint32Array} */ (a.maskVector(words, { selfSeed, pairwise }));
    return { u, weight: w.value, selfSeed, roundingSeed, words, masked };
  };
  const all = sites.map(site);
  const sum = new Uint32Array(elements + 1);
  for (const s of all) if (survivors.includes(s.u)) a.addModular(sum, s.masked);
  const droppedPairs = survivors.map((u) => ({ survivor: u, dropped, seed: pairSeed(u, dropped) }));
  const unmasked = a.unmaskSum(sum, { survivorSelfSeeds: all.filter((s) => survivors.includes(s.u)).map((s) => s.selfSeed), droppedPairs });
  const decoded = a.dequantizeSum(unmasked, survivors.length, params);
  const declared = all.filter((s) => survivors.includes(s.u)).map((s) => s.weight);
  const weightSum = a.dequantizeSum(unmasked.subarray(elements), survivors.length, { ...params, clip: 1 })[0] ?? Number.NaN;
  const checked = a.checkWeightSum(weightSum, declared, params.quantBits);
  if (!checked.ok) throw new Error(checked.issues.join('; '));
  const bound = a.sumRangeBound(checked.value, survivors.length, params);
  const range = a.checkSumRange(decoded.subarray(0, elements), bound);
  if (!range.ok) throw new Error(range.issues.join('; '));
  return {
    params,
    maxSiteWeight,
    elements,
    survivors,
    dropped: [dropped],
    pairwiseSeeds: [['site-a', 'site-b'], ['site-a', 'site-c'], ['site-b', 'site-c']].map(([u = '', v = '']) => ({ sites: [u, v], seed: hex(pairSeed(u, v)) })),
    sites: all.map((s) => ({
      site: s.u,
      count: counts[s.u],
      weight: s.weight,
      values: Array.from(Float32Array.from(values[s.u] ?? [])),
      selfSeed: hex(s.selfSeed),
      roundingSeed: hex(s.roundingSeed),
      quantized: Array.from(s.words),
      masked: Array.from(s.masked),
    })),
    sum: Array.from(sum),
    unmasked: Array.from(unmasked),
    decoded: Array.from(decoded.subarray(0, elements)),
    weightSum,
    declaredWeightSum: checked.value,
    weightSumTolerance: a.weightSumTolerance(survivors.length, params.quantBits),
    rangeBound: bound,
    mean: Array.from(decoded.subarray(0, elements), (v) => Math.fround(v / checked.value)),
  };
}

/** @param {VectorModules} m */
function graphs(m) {
  const a = m.aggregation;
  const ids = (/** @type {number} */ n) => Array.from({ length: n }, (_, i) => `site-${String(i).padStart(2, '0')}`);
  const seed = fixedBytes('graph/seed', 32);
  const label = Buffer.from(a.NEIGHBOUR_GRAPH_LABEL, 'utf8');
  const key = hkdfSha256(seed, label, label);
  /** @param {readonly string[]} sites @param {number} degree @param {boolean} all */
  const one = (sites, degree, all) => {
    const g = a.sessionGraph(sites, seed, degree);
    const ring = g.complete ? undefined : ringOf(m, sites, key);
    if (ring) {
      // H(k, n) as documented: position i is joined to positions i ± 1..k/2 (mod n).
      const n = ring.length;
      for (let i = 0; i < n; i++) {
        const near = [];
        for (let d = 1; d <= g.degree / 2; d++) near.push(ring[(i + d) % n], ring[(i - d + n) % n]);
        if (near.sort().join() !== g.neighbours(ring[i] ?? '').join()) throw new Error('the graph is not H(k, n) over the documented ring');
      }
    }
    return {
      sites: [...sites].reverse(),
      degree,
      complete: g.complete,
      effectiveDegree: g.degree,
      ring: ring ?? [],
      neighbours: Object.fromEntries(g.sites.filter((_, i) => all || i < 3).map((s) => [s, g.neighbours(s)])),
    };
  };
  return {
    seed: hex(seed),
    permutationKey: hex(key),
    cases: [one(ids(5), 0, true), one(ids(10), 4, true), one(ids(40), 0, false)],
  };
}

/**
 * HKDF-SHA256 (RFC 5869) with a 32-byte output, written out with HMAC so the vectors do not take
 * node's `hkdfSync` (which the library uses) for their own check.
 * @param {Uint8Array} ikm
 * @param {Uint8Array} salt
 * @param {Uint8Array} info
 */
function hkdfSha256(ikm, salt, info) {
  const prk = createHmac('sha256', salt).update(ikm).digest();
  return new Uint8Array(createHmac('sha256', prk).update(info).update(Buffer.from([1])).digest());
}

/**
 * The ring order of H(k, n), written out from docs/protocol.md: sites sorted, then Fisher–Yates
 * from the last position down, each draw a 32-bit word of AES-CTR(key) rejected at or above
 * ⌊2^32/m⌋·m and taken mod m.
 * @param {VectorModules} m
 * @param {readonly string[]} sites
 * @param {Uint8Array} key
 */
function ringOf(m, sites, key) {
  const out = [...sites].sort();
  const words = m.aggregation.expandMask(key, 0, 4096, 32);
  let used = 0;
  for (let i = out.length - 1; i > 0; i--) {
    const n = i + 1;
    const limit = Math.floor(2 ** 32 / n) * n;
    let w = words[used++] ?? 0;
    while (w >= limit) w = words[used++] ?? 0;
    const j = w % n;
    [out[i], out[j]] = [/** @type {string} */ (out[j]), /** @type {string} */ (out[i])];
  }
  return out;
}

/** @param {VectorModules} m */
function receipts(m) {
  const { receiptPayload } = m.receipt;
  const fields = {
    federation: 'demo-federation',
    runId: 'run-1',
    round: 12,
    site: 'site-a',
    parentSha256: sha256('parent'),
    modelSha256: sha256('model'),
    dataManifestSha256: sha256('manifest'),
  };
  const payload = receiptPayload(fields);
  const refused = [
    { name: 'round 0', fields: { ...fields, round: 0 } },
    { name: 'a space in a field', fields: { ...fields, runId: 'run 1' } },
    { name: 'a newline in a field', fields: { ...fields, site: 'site-a\nsite-b' } },
    { name: 'a non-ASCII field', fields: { ...fields, federation: 'fédération' } },
  ];
  return {
    fields,
    payloadText: payload.toString('utf8'),
    payload: hex(payload),
    signature: testSignature(payload, 'receipt'),
    emptyManifest: { fields: { ...fields, dataManifestSha256: '' }, payload: hex(receiptPayload({ ...fields, dataManifestSha256: '' })) },
    refused: refused.map((r) => ({ ...r, error: codeOf(() => receiptPayload(r.fields)) })),
    v2: receiptsV2(receiptPayload, fields),
    v3: receiptsV3(m.receipt, fields),
  };
}

/**
 * Version 3 (protocol version 12): the delta's SHA-256 and its parts between the manifest and the
 * usage. A delta uploaded whole names no parts (an empty line); one in parts names each part, and
 * its SHA-256 is that of the parts' lines (`partsSha256`).
 * @param {VectorModules['receipt']} receipt
 * @param {import('../common/receipt.js').ReceiptFields} fields
 */
function receiptsV3(receipt, fields) {
  const { receiptPayload, partsSha256 } = receipt;
  /** @type {import('../common/usage.js').RoundUsage} */
  const usage = { source: 'unknown', gpus: 0, wallMs: 0, allocatedGpuMs: 0, trainingGpuMs: 0, jobs: '', reason: 'no scheduler here' };
  const first = { start: 0, end: 4_718_592, sha256: sha256('part-0') };
  const second = { start: 4_718_592, end: 9_437_188, sha256: sha256('part-1') };
  const parts = [first, second];
  const gapped = [first, { ...second, start: 4_718_593 }];
  const inParts = { sha256: partsSha256(parts), parts };
  const accepted = [
    { name: 'a delta uploaded whole', delta: { sha256: sha256('delta'), parts: [] } },
    { name: 'a delta uploaded in two parts (the last ending with a masked weight word)', delta: inParts },
  ];
  /** @type {{ name: string, fields: Record<string, unknown> }[]} */
  const refused = [
    { name: "a delta SHA-256 that is not its parts'", fields: { ...fields, usage, delta: { ...inParts, sha256: sha256('delta') } } },
    { name: 'parts that do not start at byte 0', fields: { ...fields, usage, delta: { sha256: partsSha256([second]), parts: [second] } } },
    { name: 'parts with a gap', fields: { ...fields, usage, delta: { sha256: partsSha256(gapped), parts: gapped } } },
    { name: 'an upper-case SHA-256', fields: { ...fields, usage, delta: { sha256: sha256('delta').toUpperCase(), parts: [] } } },
    { name: 'a delta without a usage', fields: { ...fields, delta: inParts } },
  ];
  return {
    lines: 'the seven fields of version 1, then the delta SHA-256 and its parts (<start>-<end>:<sha256>, comma-separated; empty for a whole delta), then the seven usage lines of version 2',
    partsSha256: { parts, sha256: inParts.sha256, text: parts.map((p) => `${p.start}-${p.end} ${p.sha256}\n`).join('') },
    cases: accepted.map(({ name, delta }) => {
      const payload = receiptPayload({ ...fields, usage, delta });
      return { name, fields: { ...fields, usage, delta }, payloadText: payload.toString('utf8'), payload: hex(payload) };
    }),
    refused: refused.map(({ name, fields: f }) => ({ name, fields: f, error: codeOf(() => receiptPayload(/** @type {import('../common/receipt.js').ReceiptFields} */ (/** @type {unknown} */ (f)))) })),
  };
}

/**
 * Version 2 (protocol version 6): the usage's seven lines after the manifest. Version 1 above is
 * what receipts journaled before version 6 keep, and what verifies them.
 * @param {VectorModules['receipt']['receiptPayload']} receiptPayload
 * @param {import('../common/receipt.js').ReceiptFields} fields
 */
function receiptsV2(receiptPayload, fields) {
  /** @type {import('../common/usage.js').RoundUsage} */
  const slurm = { source: 'slurm-sacct', gpus: 4, wallMs: 1_800_000, allocatedGpuMs: 7_200_000, trainingGpuMs: 6_480_000, jobs: '4711,4712.0', reason: '' };
  /** @type {import('../common/usage.js').RoundUsage} */
  const unknown = { source: 'unknown', gpus: 0, wallMs: 0, allocatedGpuMs: 0, trainingGpuMs: 0, jobs: '', reason: 'sacct is not installed on this cluster' };
  /** @type {{ name: string, usage: import('../common/usage.js').RoundUsage }[]} */
  const accepted = [
    { name: 'slurm-sacct usage', usage: slurm },
    { name: 'wall-clock usage, no jobs', usage: { ...slurm, source: 'wall-clock', gpus: 2, wallMs: 60_000, allocatedGpuMs: 120_000, trainingGpuMs: 0, jobs: '' } },
    { name: 'unknown usage, a reason with spaces', usage: unknown },
  ];
  /** @type {{ name: string, usage: Record<string, unknown> }[]} */
  const refused = [
    { name: 'training above allocated', usage: { ...slurm, trainingGpuMs: slurm.allocatedGpuMs + 1 } },
    { name: 'allocated above wall × gpus', usage: { ...slurm, allocatedGpuMs: slurm.wallMs * slurm.gpus + 1, trainingGpuMs: 0 } },
    { name: 'unknown with figures', usage: { ...unknown, gpus: 1 } },
    { name: 'unknown with a blank reason', usage: { ...unknown, reason: '   ' } },
    { name: 'known usage with a reason', usage: { ...slurm, reason: 'measured' } },
    { name: 'a reason with a newline', usage: { ...unknown, reason: 'no scheduler\nslurm-sacct' } },
    { name: 'a reason of 513 characters', usage: { ...unknown, reason: 'x'.repeat(513) } },
    { name: 'a space in jobs', usage: { ...slurm, jobs: '4711, 4712' } },
    { name: 'an empty job id', usage: { ...slurm, jobs: '4711,' } },
    { name: 'a negative figure', usage: { ...slurm, trainingGpuMs: -1 } },
    { name: 'a fractional figure', usage: { ...slurm, wallMs: 1_800_000.5 } },
    { name: 'another source', usage: { ...slurm, source: 'nvidia-smi' } },
  ];
  return {
    lines: 'the seven fields of version 1, then source, gpus, wallMs, allocatedGpuMs, trainingGpuMs, jobs, reason; the reason (last) may hold spaces',
    cases: accepted.map(({ name, usage }) => {
      const payload = receiptPayload({ ...fields, usage });
      return { name, fields: { ...fields, usage }, payloadText: payload.toString('utf8'), payload: hex(payload) };
    }),
    refused: refused.map(({ name, usage }) => ({ name, fields: { ...fields, usage }, error: codeOf(() => receiptPayload({ ...fields, usage: /** @type {import('../common/usage.js').RoundUsage} */ (/** @type {unknown} */ (usage)) })) })),
  };
}

/** @param {VectorModules} m */
function canonicalJson(m) {
  const { canonicalJson: canonical } = m.journal;
  /** @type {{ name: string, input: string, jcs: boolean }[]} */
  const inputs = [
    { name: 'keys sorted by UTF-16 code units: an astral key (a surrogate pair, D83D…) sorts before U+FB33 and after U+20AC', input: '{"\\ufb33":"dalet with dagesh","\\u20ac":"euro","\\ud83d\\ude00":"grinning face","\\u00f6":"o diaeresis","\\u0080":"C1 control","1":"one","\\r":"carriage return","A":"upper","a":"lower","":"empty"}', jcs: true },
    { name: 'nested objects and arrays keep array order, sort every object', input: '{"b":[3,{"z":1,"y":[{"d":0,"c":null}]},"x"],"a":{"b":true,"a":false},"c":[]}', jcs: true },
    { name: 'numbers: −0, 1e-7, 1e21 and their neighbours in ECMAScript form', input: '[-0,0.0,-0.0,1e-7,1e-6,1e-5,1e20,1e21,1.0,100,4.50,2e-3,1E30,0.000000000000000000000000001]', jcs: true },
    { name: 'numbers: the double extremes and rounding', input: '[5e-324,-5e-324,1.7976931348623157e308,9007199254740991,9007199254740993,0.30000000000000004,333333333.33333329,295147905179352830000,9.999999999999997e22,1e23]', jcs: true },
    { name: 'strings: the escapes JSON needs and no more (DEL, U+2028, non-ASCII and astral stay raw)', input: '["\\u0000\\u0007\\b\\t\\n\\u000b\\f\\r\\u001f","\\"\\\\/","\\u007f\\u0080\\u2028\\u2029","é€😀","\\ud83d\\ude00"]', jcs: true },
    { name: 'non-ASCII keys and values in a journal-like body', input: '{"type":"round-aborted","reason":"café ☕ closed 😀","runId":"run-1","round":3,"attempt":1}', jcs: true },
    { name: 'literals', input: '{"t":true,"f":false,"n":null}', jcs: true },
    { name: 'a lone surrogate (not I-JSON, where RFC 8785 has no answer): escaped as \\udXXX in lower case', input: '["\\ud800","a\\udfffb"]', jcs: false },
  ];
  return {
    rule: 'objects: keys sorted by UTF-16 code units, each key and value as JSON.stringify writes it, no whitespace; arrays in order; numbers and strings as ECMAScript JSON.stringify (Number::toString, -0 as 0); hash = SHA-256 of the UTF-8 bytes.',
    cases: inputs.map(({ name, input, jcs }) => {
      const out = canonical(JSON.parse(input));
      return { name, input, canonical: out, sha256: sha256(out), rfc8785: jcs };
    }),
  };
}

/** @param {VectorModules} m */
function journal(m) {
  const { recordHash, canonicalJson: canonical, GENESIS_HASH } = m.journal;
  /** @type {Record<string, unknown>[]} */
  const bodies = [
    { type: 'round-opened', runId: 'run-1', round: 1, attempt: 0 },
    { type: 'round-aborted', runId: 'run-1', round: 1, attempt: 0, reason: 'only 1 of 2 required sites in keys — “café” 😀' },
    {
      type: 'round-committed',
      runId: 'run-1',
      round: 1,
      attempt: 1,
      participants: [
        { site: 'site-b', weight: 480, samples: 480, tokens: 30720, steps: 30, trainLoss: 2.5, deltaSha256: sha256('delta-b'), dataManifestSha256: sha256('manifest-b') },
        { site: 'site-a', weight: 256.5, samples: 256, tokens: 16384, steps: 16, trainLoss: 3.0000001, deltaSha256: sha256('delta-a'), dataManifestSha256: '' },
      ],
      dropped: [],
      parentSha256: sha256('parent'),
      modelSha256: sha256('model'),
      strategy: { name: 'diloco', lr: 0.7, momentum: 0.9, nesterov: true },
      serverStep: 1,
      bytesUp: 1e21,
      bytesDown: 0,
      startedMs: 1_764_892_800_000,
    },
  ];
  /** @type {{ seq: number, ts: number, prev: string, term?: number, body: Record<string, unknown>, canonical: string, hash: string }[]} */
  const records = [];
  let prev = GENESIS_HASH;
  bodies.forEach((body, i) => {
    const r = { seq: i + 1, ts: 1_764_892_800_000 + 1000 * i, prev, body: /** @type {{ type: string }} */ (body) };
    const hash = recordHash(r);
    records.push({ ...r, canonical: canonical({ seq: r.seq, ts: r.ts, prev: r.prev, body: r.body }), hash });
    prev = hash;
  });
  // The same journal imported into a replicated stream and continued by leaders of terms 3 and 5.
  /** @type {[number, Record<string, unknown>][]} */
  const termedBodies = [
    [3, { type: 'round-opened', runId: 'run-1', round: 2, attempt: 0 }],
    [3, { type: 'round-aborted', runId: 'run-1', round: 2, attempt: 0, reason: 'the coordinator lost its lease' }],
    [5, { type: 'round-opened', runId: 'run-1', round: 2, attempt: 1 }],
  ];
  /** @type {typeof records} */
  const termed = [];
  /** @param {number} seq @param {number} term @param {string} prevHash @param {Record<string, unknown>} body */
  const make = (seq, term, prevHash, body) => {
    const r = { seq, ts: 1_764_892_900_000 + 1000 * seq, prev: prevHash, term, body: /** @type {{ type: string }} */ (body) };
    return { ...r, canonical: canonical({ seq: r.seq, ts: r.ts, prev: r.prev, term: r.term, body: r.body }), hash: recordHash(r) };
  };
  for (const [term, body] of termedBodies) {
    const r = make(records.length + termed.length + 1, term, prev, body);
    termed.push(r);
    prev = r.hash;
  }
  const chain = [...records, ...termed].map(({ canonical: _, ...r }) => r);
  const [r4, r5, r6] = /** @type {typeof chain} */ (chain.slice(3));
  // What a stream may hold besides the chain: a writer of term 4 that lost the race for seq 6, an
  // old leader (term 3) writing after term 5, garbage, and a record sent twice.
  const stream = [
    ...chain.slice(0, 5).map((r) => JSON.stringify(r)),
    JSON.stringify(r6),
    JSON.stringify(make(6, 4, /** @type {{ hash: string }} */ (r5).hash, { type: 'round-opened', runId: 'run-1', round: 2, attempt: 1 })),
    JSON.stringify(make(7, 3, /** @type {{ hash: string }} */ (r6).hash, { type: 'round-opened', runId: 'run-1', round: 2, attempt: 2 })),
    'not a record',
    JSON.stringify(r4),
  ];
  const read = m.chainRule.chainOf(stream.map((data, i) => ({ streamSeq: i + 1, data })));
  const offChain = new Set(read.ignored.map((x) => x.streamSeq));
  return {
    genesis: GENESIS_HASH,
    records,
    termed,
    stream: stream.map((message, i) => ({ streamSeq: i + 1, message, onChain: !offChain.has(i + 1) })),
    chain: read.records.map((r) => r.hash),
  };
}

/** @param {VectorModules} m */
function wireEncodings(m) {
  const a = m.aggregation;
  const chunk = fixedBytes('wire/chunk', 100);
  const bf16 = Float32Array.from([1, -2.5, 1.00390625, 1.005859375, 3.4028235e38, -0, 1e-40, Number.POSITIVE_INFINITY, Number.NaN]);
  const bf16Bits = a.f32ToBf16(bf16);
  const block = Float32Array.from({ length: 130 }, (_, i) => Math.fround(Math.sin(i + 1) * (i < 128 ? 0.01 : 2)));
  const int8 = a.encodeInt8Blocks(block);
  /** @type {readonly ('f32' | 'bf16' | 'int8' | 'secagg32' | 'secagg16')[]} */
  const encodings = ['f32', 'bf16', 'int8', 'secagg32', 'secagg16'];
  return {
    crc32c: [
      { data: hex(Buffer.from('123456789')), crc32c: m.crc32c(Buffer.from('123456789')) },
      { data: hex(chunk), crc32c: m.crc32c(chunk) },
    ],
    bf16: { f32Bits: Array.from(new Uint32Array(bf16.buffer)).map((b) => b.toString(16).padStart(8, '0')), bf16Bits: Array.from(bf16Bits).map((b) => b.toString(16).padStart(4, '0')) },
    int8: { values: Array.from(block), encoded: hex(int8) },
    layouts: { tensors: [3, 130], cases: encodings.map((encoding) => ({ encoding, segments: a.deltaSegments(encoding, [3, 130]) })) },
  };
}

/**
 * The mixed delta of a folded upload, as docs/protocol.md writes it: f32((F·clip(Δ_f) + Σ c_i·clip(Δ_i)) / W)
 * with c_i = λ·S_i, in float64, the parts added in order; no clip when `clip` is undefined (plain rounds).
 * @param {readonly number[]} fresh
 * @param {readonly (readonly number[])[]} parts
 * @param {{ fresh: number, counts: readonly number[], weight: number }} w
 * @param {number | undefined} clip
 */
function mixFolded(fresh, parts, w, clip) {
  const cl = (/** @type {number} */ x) => (clip === undefined ? x : Math.max(-clip, Math.min(clip, x)));
  return fresh.map((x, j) => {
    let acc = w.fresh * cl(x);
    parts.forEach((p, i) => (acc += /** @type {number} */ (w.counts[i]) * cl(/** @type {number} */ (p[j]))));
    return Math.fround(acc / w.weight);
  });
}

/** @param {VectorModules} m */
function foldedWeight(m) {
  const a = m.aggregation;
  const max = Number.MAX_SAFE_INTEGER;
  /**
   * @param {string} name
   * @param {{ count: number, staleness: number }} fresh
   * @param {{ count: number, staleness: number }[]} folded
   * @param {number} maxSiteWeight
   */
  const weigh = (name, fresh, folded, maxSiteWeight) => {
    const r = a.uploadWeight(fresh, folded, maxSiteWeight);
    if (!r.ok) return { name, fresh, folded, maxSiteWeight, code: r.code };
    const v = r.value;
    return { name, fresh, folded, maxSiteWeight, weight: v.weight, freshCount: v.fresh, discounted: v.folded, foldScale: v.foldScale, counts: v.folded.map((s) => s * v.foldScale) };
  };
  const cases = [
    weigh('fresh work alone', { count: 1024, staleness: 0 }, [], 1400),
    weigh('one part a round stale, room for all of it: λ = 1', { count: 1024, staleness: 0 }, [{ count: 1024, staleness: 1 }], 2000),
    weigh('the same part shrunk to fit maxSiteWeight: λ = 376/512', { count: 1024, staleness: 0 }, [{ count: 1024, staleness: 1 }], 1400),
    weigh('two parts shrunk together: λ = 600/833, not a binary fraction', { count: 900, staleness: 0 }, [{ count: 1000, staleness: 1 }, { count: 999, staleness: 2 }], 1500),
    weigh('fresh work fills maxSiteWeight: no room, λ = 0', { count: 1400, staleness: 0 }, [{ count: 1024, staleness: 1 }], 1400),
    weigh('a stale fresh part (trained from the previous model) is discounted too', { count: 1024, staleness: 1 }, [{ count: 1024, staleness: 2 }], 1400),
    weigh('a part that counts nothing after the discount', { count: 10, staleness: 0 }, [{ count: 1, staleness: 1 }], 100),
    weigh('counts at the edge of uint64 on the wire (2^53 − 1)', { count: 3, staleness: 0 }, [{ count: max, staleness: 1 }, { count: max, staleness: 2 }], max),
    weigh('refused: the fresh part above maxSiteWeight', { count: 1401, staleness: 0 }, [], 1400),
    weigh('refused: the fresh part discounted to 0', { count: 1, staleness: 1 }, [{ count: 1024, staleness: 2 }], 1400),
  ];
  const mixCase = /** @type {{ weight: number, freshCount: number, counts: number[] }} */ (cases[3]);
  const fresh = [0, 0.1, -0.2, 0.7, -3, 0.25, 1e-7, -0.5].map(Math.fround);
  const parts = [
    [0, -0.4, 0.3, 0.9, 0.05, -0.25, 2, 0.125].map(Math.fround),
    [0, 0.6, -0.6, -0.1, 0.2, 1e-3, -7, 0.375].map(Math.fround),
  ];
  const w = { fresh: mixCase.freshCount, counts: mixCase.counts, weight: mixCase.weight };
  return {
    discount: /** @type {[number, number][]} */ ([
      [0, 0],
      [1, 0],
      [1, 1],
      [7, 0],
      [7, 1],
      [7, 2],
      [7, 6],
      [1024, 1],
      [1024, 2],
      [1000, 3],
      [max, 1],
      [max, 2],
    ]).map(([count, staleness]) => ({ count, staleness, discounted: a.discountedCount(count, staleness) })),
    cases,
    mix: {
      weights: cases[3]?.name,
      fresh,
      parts,
      secure: { clip: 0.5, mixed: mixFolded(fresh, parts, w, 0.5) },
      plain: { mixed: mixFolded(fresh, parts, w, undefined) },
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const dist = (/** @type {string} */ p) => import(pathToFileURL(join(process.cwd(), 'dist', p)).href);
  const { crc32c } = await import('@node-rs/crc32');
  const modules = {
    aggregation: await dist('aggregation/index.js'),
    encoding: await dist('aggregation/secagg/encoding.js'),
    receipt: await dist('common/receipt.js'),
    journal: await dist('coordinator/state/journal.js'),
    chainRule: await dist('coordinator/state/chain-rule.js'),
    crc32c,
    protocolVersion: (await dist('proto/index.js')).PROTOCOL_VERSION,
  };
  const files = vectorFiles(modules);
  mkdirSync(VECTOR_DIR, { recursive: true });
  for (const name of readdirSync(VECTOR_DIR)) if (!files.has(name)) rmSync(join(VECTOR_DIR, name));
  for (const [name, body] of files) writeFileSync(join(VECTOR_DIR, name), body);
  process.stdout.write(`wrote ${files.size} files to ${VECTOR_DIR}/\n`);
}
