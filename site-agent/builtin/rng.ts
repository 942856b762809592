/**
 * Seeded pseudo-random numbers for the builtin trainer: xoshiro128** (Blackman & Vigna 2018),
 * seeded through splitmix64 so that nearby seeds give unrelated streams. No global state: every
 * consumer receives an {@link Rng} object and advances it explicitly.
 */

const MASK64 = (1n << 64n) - 1n;

function splitmix64(state: bigint): { state: bigint; value: bigint } {
  const next = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = next;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return { state: next, value: z ^ (z >> 31n) };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

// Jump polynomial for xoshiro128**: advances the state by 2^64 outputs (Vigna's reference code).
const JUMP = [0x8764000b, 0xf542d2d3, 0x6fa035c3, 0x77f2db5b] as const;

/** A seeded generator. Methods advance its internal state; clone it to branch deterministically. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  private constructor(s0: number, s1: number, s2: number, s3: number) {
    this.s0 = s0;
    this.s1 = s1;
    this.s2 = s2;
    this.s3 = s3;
  }

  /**
   * Creates a generator from a 64-bit seed (a non-negative safe integer or a bigint below 2^64).
   * The same seed always yields the same sequence.
   */
  static fromSeed(seed: number | bigint): Rng {
    if (typeof seed === 'number' && (!Number.isSafeInteger(seed) || seed < 0)) {
      throw new RangeError(`seed must be a non-negative safe integer, got ${seed}`);
    }
    const big = BigInt(seed);
    if (big < 0n || big > MASK64) throw new RangeError(`seed must be below 2^64, got ${seed}`);
    const a = splitmix64(big);
    const b = splitmix64(a.state);
    const w0 = Number(a.value & 0xffffffffn);
    const w1 = Number(a.value >> 32n);
    const w2 = Number(b.value & 0xffffffffn);
    const w3 = Number(b.value >> 32n);
    // xoshiro must not start from the all-zero state; splitmix64 makes that astronomically unlikely.
    return new Rng((w0 | w1 | w2 | w3) === 0 ? 1 : w0, w1, w2, w3);
  }

  /** Returns the next uniformly distributed unsigned 32-bit integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Returns a uniform float in [0, 1) with 53 bits of resolution. */
  next(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Returns a standard normal deviate (Box–Muller; one deviate per call). */
  normal(): number {
    let u = this.next();
    while (u === 0) u = this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Returns a uniform integer in [0, n) without modulo bias; n must be an integer in [1, 2^32]. */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 4294967296) {
      throw new RangeError(`int(n) needs an integer n in [1, 2^32], got ${n}`);
    }
    // Lemire-style rejection on the low part keeps every outcome equally likely.
    const limit = 4294967296 - (4294967296 % n);
    let x = this.nextU32();
    while (x >= limit) x = this.nextU32();
    return x % n;
  }

  /** Returns an independent copy in the same state. */
  clone(): Rng {
    return new Rng(this.s0, this.s1, this.s2, this.s3);
  }

  /**
   * Returns a copy advanced by 2^64 outputs, leaving this generator untouched. The copy's stream
   * cannot overlap the next 2^64 outputs of this one, which makes it a disjoint stream.
   */
  jumped(): Rng {
    const src = this.clone();
    let t0 = 0;
    let t1 = 0;
    let t2 = 0;
    let t3 = 0;
    for (const word of JUMP) {
      for (let b = 0; b < 32; b++) {
        if ((word >>> b) & 1) {
          t0 ^= src.s0;
          t1 ^= src.s1;
          t2 ^= src.s2;
          t3 ^= src.s3;
        }
        src.nextU32();
      }
    }
    return new Rng(t0 >>> 0, t1 >>> 0, t2 >>> 0, t3 >>> 0);
  }
}

/** Creates a seeded generator; shorthand for {@link Rng.fromSeed}. */
export function createRng(seed: number | bigint): Rng {
  return Rng.fromSeed(seed);
}
