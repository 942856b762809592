import { describe, expect, it } from 'vitest';
import {
  type DroppedPair,
  type MaskWords,
  type RandomBytes,
  type X25519KeyPair,
  addModular,
  combine,
  deriveShareEncryptionKey,
  derivePairwiseMaskSeed,
  decodeSharePayload,
  encodeSharePayload,
  exportX25519PrivateKey,
  generateX25519KeyPair,
  importX25519PrivateKey,
  maskVector,
  openShare,
  pairwiseSign,
  sealShare,
  sharedSecret,
  split,
  unmaskSum,
} from '../../../aggregation/secagg/index.js';
import { chiSquared, chiSquaredCritical, codeOf, seededRandomBytes } from './helpers.js';

const RUN = { run: 'run-7', round: 3 };
const SITES = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e'];
const T = 3;
const LEN = 5000;

interface Site {
  readonly id: string;
  readonly x: number; // Shamir x-coordinate as a share holder
  readonly c: X25519KeyPair;
  readonly s: X25519KeyPair;
  readonly selfSeed: Uint8Array;
  readonly input: MaskWords;
  /** Sealed share payloads this site received, by sender. */
  readonly inbox: Map<string, ReturnType<typeof sealShare>>;
  /** The share of its own secrets a site keeps (Bonawitz et al. 2017: shares go to all of U1, itself included). */
  own: Uint8Array;
}

function setUp(bits: 16 | 32, rng: RandomBytes): Site[] {
  const sites = SITES.map((id, i): Site => {
    const words = rng(LEN * (bits / 8));
    const input = bits === 32 ? new Uint32Array(words.buffer.slice(words.byteOffset, words.byteOffset + words.length)) : new Uint16Array(words.buffer.slice(words.byteOffset, words.byteOffset + words.length));
    // Quantized inputs are small (q bits); keep them below 2^(b−3) so 5 of them never wrap.
    for (let j = 0; j < input.length; j++) input[j] = input[j]! >>> 3;
    return { id, x: i + 1, c: generateX25519KeyPair(rng), s: generateX25519KeyPair(rng), selfSeed: rng(32), input, inbox: new Map(), own: new Uint8Array(0) };
  });
  // Round 1 (share keys): each site splits b_u and s_u^SK and seals share j to site j.
  for (const u of sites) {
    const selfShares = split(u.selfSeed, T, sites.length, rng);
    const keyShares = split(exportX25519PrivateKey(u.s.privateKey), T, sites.length, rng);
    for (const v of sites) {
      if (v === u) {
        u.own = encodeSharePayload({ x: u.x, maskKeyShare: keyShares[u.x - 1]!.y, selfSeedShare: selfShares[u.x - 1]!.y });
        continue;
      }
      const key = deriveShareEncryptionKey(sharedSecret(u.c.privateKey, v.c.publicKey), { ...RUN, from: u.id, to: v.id });
      const payload = encodeSharePayload({ x: v.x, maskKeyShare: keyShares[v.x - 1]!.y, selfSeedShare: selfShares[v.x - 1]!.y });
      v.inbox.set(u.id, sealShare(key, { ...RUN, from: u.id, to: v.id }, payload, rng));
    }
  }
  return sites;
}

function pairSeed(u: Site, v: Site): Uint8Array {
  return derivePairwiseMaskSeed(sharedSecret(u.s.privateKey, v.s.publicKey), { ...RUN, siteA: u.id, siteB: v.id });
}

/** Round 2: the masked input of `u` (complete graph). */
function masked(u: Site, sites: readonly Site[], wordOffset = 0, input = u.input): MaskWords {
  const pairwise = sites.filter((v) => v !== u).map((v) => ({ peer: v.id, seed: pairSeed(u, v), sign: pairwiseSign(u.id, v.id) }));
  return maskVector(input, { selfSeed: u.selfSeed, pairwise, wordOffset });
}

/** A survivor `holder` decrypts the shares that `owner` sent it. */
function sharesOf(owner: Site, holders: readonly Site[]): { self: { x: number; y: Uint8Array }[]; key: { x: number; y: Uint8Array }[] } {
  const self: { x: number; y: Uint8Array }[] = [];
  const key: { x: number; y: Uint8Array }[] = [];
  for (const h of holders) {
    let plain = h.own;
    if (h !== owner) {
      const shareKey = deriveShareEncryptionKey(sharedSecret(h.c.privateKey, owner.c.publicKey), { ...RUN, from: owner.id, to: h.id });
      const opened = openShare(shareKey, h.inbox.get(owner.id)!, { ...RUN, from: owner.id, to: h.id });
      if (!opened.ok) throw new Error(opened.code);
      plain = opened.value;
    }
    const payload = decodeSharePayload(plain);
    if (!payload.ok) throw new Error(payload.code);
    self.push({ x: payload.value.x, y: payload.value.selfSeedShare });
    key.push({ x: payload.value.x, y: payload.value.maskKeyShare });
  }
  return { self, key };
}

/** Round 4 at the coordinator: rebuild seeds from t survivors' shares and unmask. */
function unmask(sum: MaskWords, sites: readonly Site[], survivors: readonly Site[], wordOffset = 0): MaskWords {
  const dropped = sites.filter((s) => !survivors.includes(s));
  // Survivors reveal b_u shares for survivors and s^SK shares for the dropped — never both for one site.
  const survivorSelfSeeds = survivors.map((u) => combine(sharesOf(u, survivors).self.slice(0, T), { threshold: T }));
  const droppedPairs: DroppedPair[] = [];
  for (const v of dropped) {
    const sk = importX25519PrivateKey(combine(sharesOf(v, survivors).key, { threshold: T }));
    for (const u of survivors) {
      const seed = derivePairwiseMaskSeed(sharedSecret(sk, u.s.publicKey), { ...RUN, siteA: v.id, siteB: u.id });
      droppedPairs.push({ survivor: u.id, dropped: v.id, seed });
    }
  }
  return unmaskSum(sum, { survivorSelfSeeds, droppedPairs, wordOffset });
}

function plainSum(survivors: readonly Site[], bits: 16 | 32): MaskWords {
  const acc = bits === 32 ? new Uint32Array(LEN) : new Uint16Array(LEN);
  for (const u of survivors) addModular(acc, u.input);
  return acc;
}

describe('masking and unmasking, 5 sites, t = 3', () => {
  for (const bits of [32, 16] as const) {
    it(`recovers the exact sum of quantized inputs in Z_2^${bits} with no dropout`, () => {
      const sites = setUp(bits, seededRandomBytes(`e2e-${bits}`));
      const sum = bits === 32 ? new Uint32Array(LEN) : new Uint16Array(LEN);
      for (const u of sites) addModular(sum, masked(u, sites));
      // Pairwise masks cancel; removing the self masks leaves the plain sum exactly.
      expect(Array.from(unmask(sum, sites, sites))).toEqual(Array.from(plainSum(sites, bits)));
    });

    for (const drop of [['site-c'], ['site-a', 'site-e']]) {
      it(`recovers the survivors' sum in Z_2^${bits} when ${drop.join(' and ')} drop after sharing keys`, () => {
        const sites = setUp(bits, seededRandomBytes(`drop-${bits}-${drop.join()}`));
        const survivors = sites.filter((s) => !drop.includes(s.id));
        const sum = bits === 32 ? new Uint32Array(LEN) : new Uint16Array(LEN);
        // Survivors masked against every neighbour, including the ones that later dropped.
        for (const u of survivors) addModular(sum, masked(u, sites));
        const expected = Array.from(plainSum(survivors, bits));
        expect(Array.from(sum)).not.toEqual(expected);
        expect(Array.from(unmask(sum, sites, survivors))).toEqual(expected);
      });
    }
  }

  it('masks and unmasks chunk by chunk at word offsets, matching the whole vector', () => {
    const sites = setUp(32, seededRandomBytes('chunked'));
    const survivors = sites.slice(1);
    const whole = new Uint32Array(LEN);
    for (const u of survivors) addModular(whole, masked(u, sites));
    const cut = 1237;
    const parts = [0, cut].map((start) => {
      const end = start === 0 ? cut : LEN;
      const acc = new Uint32Array(end - start);
      for (const u of survivors) addModular(acc, masked(u, sites, start, u.input.subarray(start, end)));
      expect(Array.from(acc)).toEqual(Array.from(whole.subarray(start, end)));
      return unmask(acc, sites, survivors, start);
    });
    expect([...parts[0]!, ...parts[1]!]).toEqual(Array.from(plainSum(survivors, 32)));
  });

  it('gives masked words that pass χ² uniformity tests, even for an all-zero input', () => {
    const rng = seededRandomBytes('chi');
    const selfSeed = rng(32);
    const pairwise = [{ peer: 'p', seed: rng(32), sign: 1 as const }, { peer: 'q', seed: rng(32), sign: -1 as const }];
    const y32 = maskVector(new Uint32Array(1 << 18), { selfSeed, pairwise }) as Uint32Array;
    const top = new Float64Array(256);
    const low = new Float64Array(256);
    for (const w of y32) {
      top[w >>> 24]! += 1;
      low[w & 0xff]! += 1;
    }
    expect(chiSquared(top)).toBeLessThan(chiSquaredCritical(255));
    expect(chiSquared(low)).toBeLessThan(chiSquaredCritical(255));
    const y16 = maskVector(new Uint16Array(1 << 22), { selfSeed, pairwise });
    const bins = new Float64Array(1 << 16);
    for (const w of y16) bins[w]! += 1;
    expect(chiSquared(bins)).toBeLessThan(chiSquaredCritical((1 << 16) - 1));
  });

  it('signs pairwise masks by site order and refuses repeated peers', () => {
    expect(pairwiseSign('site-a', 'site-b')).toBe(1);
    expect(pairwiseSign('site-b', 'site-a')).toBe(-1);
    expect(codeOf(() => pairwiseSign('x', 'x'))).toBe('INVALID_ARGUMENT');
    const seed = new Uint8Array(32);
    expect(codeOf(() => maskVector(new Uint32Array(4), { selfSeed: seed, pairwise: [{ peer: 'p', seed, sign: 1 }, { peer: 'p', seed, sign: 1 }] }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => addModular(new Uint32Array(4), new Uint16Array(4)))).toBe('INVALID_ARGUMENT');
  });

  it('leaves the caller’s vectors untouched', () => {
    const input = Uint32Array.of(1, 2, 3);
    maskVector(input, { selfSeed: new Uint8Array(32).fill(1), pairwise: [] });
    expect(Array.from(input)).toEqual([1, 2, 3]);
  });
});
