/**
 * Fixed-point encoding of updates into Z_2^b (b ∈ {16, 32}) with unbiased stochastic rounding, so
 * a modular sum of masked inputs decodes to the sum of the updates (Bonawitz et al. 2017, §3
 * "inputs are vectors in Z_R"; Flower's SecAgg+ quantizer, with a data-fitted clip range).
 *
 * Encoding of x with clip c, q ≥ 2 quantization bits and weight w ≤ 1 on a grid whose zero is a
 * level, Z = 2^(q−1) − 1 (protocol version 3):
 *   x' = w·clip(x, −c, c),  t = x'·Z/c ∈ [−Z, Z],  k = ⌊t + u⌋, u ~ U[0, 1),  v = Z + k ∈ [0, 2Z].
 * E[k] = t, so the encoding is unbiased; and x' = 0 gives t = 0, k = 0 and v = Z exactly, whatever
 * u is — a coordinate no site moved sums to n·Z and decodes to exactly 0. (Version 2 used
 * L = 2^q − 1 levels over [−c, c]: zero fell half-way between two levels and every untouched weight
 * drifted by rounding noise ÷ Σw.) The clip comes before the weight, so |x'| ≤ w·c for any x: an
 * honest site with |x| > c never leaves the range the coordinator checks an unmasked sum against
 * (bounds.ts). Decoding a sum of n encodings subtracts the offset in integers, then scales:
 *   Σx' ≈ (Σv − n·Z)·c/Z,   |decode(Σ encode(xᵢ)) − Σ x'ᵢ| < n·c/Z   (each |k − t| < 1),
 * provided the modular sum never wraps: n·2Z < 2^b, guaranteed by n·2^q ≤ 2^b.
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { SecAggError, type SecAggErrorCode } from './errors.js';
import { type Result, err, ok, unwrap } from '../result.js';
import type { RandomBytes } from './encoding.js';
import { type MaskBits, type MaskWords, Keystream, PRG_CHUNK_BYTES } from './prg.js';

/** The sum budget of one round: how many sites add q-bit values in Z_2^b. */
export interface FixedPointBudget {
  readonly sites: number;
  readonly quantBits: number;
  readonly modulusBits: MaskBits;
}

/** How updates are encoded: clip range c > 0, q quantization bits, modulus bits b. */
export interface QuantizeOptions {
  readonly clip: number;
  readonly quantBits: number;
  readonly modulusBits: MaskBits;
}

/** Per-call inputs of {@link quantize}. */
export interface QuantizeInput {
  /** The site's weight w ∈ [0, 1], multiplied into the clipped value. Default 1. */
  readonly weight?: number;
  /** 32-byte seed of the rounding PRG; default fresh from `randomBytes`. */
  readonly roundingSeed?: Uint8Array;
  /** Element offset of this chunk within the whole vector (rounding words are taken from there). */
  readonly wordOffset?: number;
  readonly randomBytes?: RandomBytes;
}

/** Elements quantized per rounding-PRG call: 64 Ki words, PRG_CHUNK_BYTES of keystream. */
const BLOCK = PRG_CHUNK_BYTES / 4;
const TWO_POW_32 = 2 ** 32;

/**
 * Checks n·2^q ≤ 2^b, so a sum of `sites` q-bit values cannot wrap modulo 2^b (REFERENCE.md,
 * "Secure aggregation"). `OVERFLOW_POSSIBLE` names n, q and b; `INVALID_ARGUMENT` for nonsense.
 */
export function checkFixedPointBudget(budget: FixedPointBudget): Result<FixedPointBudget, SecAggErrorCode> {
  const { sites, quantBits, modulusBits } = budget;
  if (modulusBits !== 16 && modulusBits !== 32) return err('INVALID_ARGUMENT', 'modulusBits must be 16 or 32', { modulusBits });
  if (!Number.isSafeInteger(sites) || sites < 1) return err('INVALID_ARGUMENT', 'sites must be a positive integer', { sites });
  if (!Number.isInteger(quantBits) || quantBits < 2 || quantBits > modulusBits) {
    return err('INVALID_ARGUMENT', 'quantBits must be an integer in 2..modulusBits (one bit leaves no level but zero)', { quantBits, modulusBits });
  }
  if (sites * 2 ** quantBits > 2 ** modulusBits) {
    return err('OVERFLOW_POSSIBLE', `${sites} sites × 2^${quantBits} levels exceed the modulus 2^${modulusBits}: the masked sum could wrap`, {
      sites,
      quantBits,
      modulusBits,
      maxQuantBits: modulusBits - Math.ceil(Math.log2(sites)),
    });
  }
  return ok({ sites, quantBits, modulusBits });
}

/**
 * Encodes `x` (one chunk of an update) into Z_2^b words with stochastic rounding (see the module
 * comment). Throws `NON_FINITE` for NaN/±Inf (naming the index) and `INVALID_ARGUMENT` for bad
 * options. Deterministic given `roundingSeed` and `wordOffset`, so chunks can be encoded apart.
 */
export function quantize(x: Float32Array, options: QuantizeOptions, input: QuantizeInput = {}): MaskWords {
  const p = quantizeParams(options, input.weight ?? 1);
  const offset = input.wordOffset ?? 0;
  const seed = input.roundingSeed ?? (input.randomBytes ?? nodeRandomBytes)(32);
  const out = options.modulusBits === 32 ? new Uint32Array(x.length) : new Uint16Array(x.length);
  if (x.length === 0) return out;
  // One rounding keystream for the whole chunk, read block by block: no cipher per block.
  const rounding = new Keystream(seed, offset, x.length, 32);
  for (let start = 0; start < x.length; start += BLOCK) {
    const n = Math.min(BLOCK, x.length - start);
    quantizeRange(x, start, n, rounding.words32(rounding.take(n)), out, start, p, offset);
  }
  return out;
}

/** {@link quantize}'s resolved options: clip c, zero level Z, Z/c and the weight. */
export interface QuantizeParams {
  readonly clip: number;
  readonly zero: number;
  readonly scale: number;
  readonly weight: number;
}

/** Checks `options` and the weight once for a whole chunk (INVALID_ARGUMENT as {@link quantize}). */
export function quantizeParams(options: QuantizeOptions, weight: number): QuantizeParams {
  const { clip, zero } = resolve(options);
  if (!(weight >= 0 && weight <= 1)) throw new SecAggError('INVALID_ARGUMENT', 'weight must be in [0, 1]', { weight });
  return { clip, zero, scale: zero / clip, weight };
}

/**
 * Encodes x[from, from + n) into out[outAt, outAt + n) with rounding words u[0, n): the one
 * element formula of {@link quantize}, shared with the fused masking path (mask.ts) so the two
 * cannot drift apart. `offset` is x's element offset in the whole vector (for NON_FINITE's index).
 */
export function quantizeRange(x: Float32Array, from: number, n: number, u: Uint32Array, out: MaskWords, outAt: number, p: QuantizeParams, offset: number): void {
  const { clip: c, zero, scale, weight } = p;
  for (let i = 0; i < n; i++) {
    const xi = x[from + i]!;
    if (xi - xi !== 0) throw new SecAggError('NON_FINITE', 'update holds NaN or ±Infinity', { index: offset + from + i });
    const clipped = xi < -c ? -c : xi > c ? c : xi;
    const k = Math.floor(weight * clipped * scale + u[i]! / TWO_POW_32);
    // c·scale may round above Z, and u < 1 by only 2^-32: keep k within [−Z, Z]. The offset Z
    // is added as an integer, so t = 0 (x' = 0, or −0) gives exactly Z.
    out[outAt + i] = zero + (k > zero ? zero : k < -zero ? -zero : k);
  }
}

/**
 * Decodes a modular sum of `sites` encodings into Σ wᵢ·clip(xᵢ), error below
 * {@link quantizationErrorBound}. Throws `OVERFLOW_POSSIBLE` when the budget does not hold.
 */
export function dequantizeSum(sum: MaskWords, sites: number, options: QuantizeOptions, out: Float32Array | Float64Array = new Float64Array(sum.length)): Float32Array | Float64Array {
  const { shift, step } = dequantizeParams(sum, sites, options, out);
  for (let i = 0; i < sum.length; i++) out[i] = (sum[i]! - shift) * step;
  return out;
}

/**
 * The checks of {@link dequantizeSum} and its two constants: word i decodes to (sumᵢ − shift)·step.
 * Shared with the fused unmasking path (mask.ts, `unmaskDequantize`).
 */
export function dequantizeParams(sum: MaskWords, sites: number, options: QuantizeOptions, out: { readonly length: number }): { shift: number; step: number } {
  const { clip: c, zero } = resolve(options);
  unwrap(checkFixedPointBudget({ sites, quantBits: options.quantBits, modulusBits: options.modulusBits }), SecAggError);
  if ((options.modulusBits === 32) !== (sum instanceof Uint32Array)) throw new SecAggError('INVALID_ARGUMENT', 'sum word width does not match modulusBits', { modulusBits: options.modulusBits });
  if (out.length !== sum.length) throw new SecAggError('INVALID_ARGUMENT', 'output length differs from the sum', { out: out.length, sum: sum.length });
  // Σv < n·2^q ≤ 2^b ≤ 2^32, so Σv − n·Z is an exact integer in float64: the offset leaves in
  // integers and only the scaling rounds (an untouched coordinate decodes to exactly 0).
  return { shift: sites * zero, step: c / zero };
}

/** Worst-case |decode(Σ encode(xᵢ)) − Σ wᵢ·clip(xᵢ)| for `sites` sites: n·c/(2^(q−1) − 1). */
export function quantizationErrorBound(sites: number, options: QuantizeOptions): number {
  const { clip: c, zero } = resolve(options);
  return (sites * c) / zero;
}

/**
 * Worst-case error of a committed secure mean, Σ wᵢ·clip(xᵢ) / Σwᵢ, in any coordinate: the
 * sum's bound ÷ Σw, n·c / ((2^(q−1) − 1)·Σw); rounding the mean to float32 adds at most half an
 * ulp of its value. Σw is in encoded weights (each count ÷ maxSiteWeight), so few samples per
 * round mean a larger bound.
 */
export function meanErrorBound(sites: number, weightSum: number, options: QuantizeOptions): number {
  return quantizationErrorBound(sites, options) / weightSum;
}

/** The zero level Z = 2^(q−1) − 1 of q quantization bits: the word of x' = 0. */
export function zeroLevel(quantBits: number): number {
  return 2 ** (quantBits - 1) - 1;
}

function resolve(options: QuantizeOptions): { clip: number; zero: number } {
  const { clip, quantBits, modulusBits } = options;
  if (!(Number.isFinite(clip) && clip > 0)) throw new SecAggError('INVALID_ARGUMENT', 'clip must be a positive finite number', { clip });
  unwrap(checkFixedPointBudget({ sites: 1, quantBits, modulusBits }), SecAggError);
  return { clip, zero: zeroLevel(quantBits) };
}
