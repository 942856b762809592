/**
 * Seeded test values: the same numbers on every run and machine, without a random source to inject.
 */

/** `n` f32 values uniform in ±`scale`, from a 32-bit LCG seeded with `seed`. */
export function seededValues(n: number, seed: number, scale: number): Float32Array {
  let x = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return Math.fround(((x / 2 ** 32) * 2 - 1) * scale);
  });
}
