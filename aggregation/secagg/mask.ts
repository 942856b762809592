/**
 * Masking in Z_2^b (Bonawitz et al. 2017, round 2 "masked input collection", and round 4
 * "unmasking"): y_u = x_u + PRG(b_u) + Σ_{v} sign(u,v)·PRG(s_{u,v}) mod 2^b, where the lower site
 * id adds and the higher subtracts, so pairwise masks cancel in the sum of survivors; the
 * coordinator then removes survivors' self masks and dropped sites' pairwise masks.
 */
import { bytesOf, nativeKernels } from '../native.js';
import { SecAggError } from './errors.js';
import { compareSiteIds } from './encoding.js';
import { MASK_SLICE_WORDS, MaskWorkspace, type SignedStream } from './mask-workspace.js';
import { type MaskBits, type MaskWords, Keystream, checkStream } from './prg.js';
import { type QuantizeOptions, dequantizeParams, quantizeParams } from './quantize.js';

/** One pairwise mask of a site: the seed s_{u,v} shared with `peer`, added (+1) or subtracted (−1). */
export interface PairwiseMask {
  readonly peer: string;
  readonly seed: Uint8Array;
  readonly sign: 1 | -1;
}

/** The masks a site applies to (one chunk of) its quantized input. */
export interface MaskOptions {
  /** The site's self-mask seed b_u (32 bytes). */
  readonly selfSeed: Uint8Array;
  /** One entry per neighbour. */
  readonly pairwise: readonly PairwiseMask[];
  /** Word offset of this chunk in the whole vector (default 0). */
  readonly wordOffset?: number;
}

/** A dropped site's pairwise seed with one survivor, rebuilt from the dropped site's s-key shares. */
export interface DroppedPair {
  readonly survivor: string;
  readonly dropped: string;
  readonly seed: Uint8Array;
}

/** What the coordinator removes from (one chunk of) the sum of masked inputs. */
export interface UnmaskOptions {
  /** Self-mask seeds b_u of every site whose masked input joined the sum. */
  readonly survivorSelfSeeds: readonly Uint8Array[];
  /** Pairwise seeds between each dropped site and each of its surviving neighbours. */
  readonly droppedPairs: readonly DroppedPair[];
  /** Word offset of this chunk in the whole vector (default 0). */
  readonly wordOffset?: number;
}

/** The sign site `self` gives its mask with `peer`: +1 when self sorts first, −1 otherwise. */
export function pairwiseSign(self: string, peer: string): 1 | -1 {
  const order = compareSiteIds(self, peer);
  if (order === 0) throw new SecAggError('INVALID_ARGUMENT', 'a site has no pairwise mask with itself', { site: self });
  return order < 0 ? 1 : -1;
}

/**
 * Returns y = x + PRG(b) + Σ sign·PRG(s) mod 2^b for one chunk (Bonawitz et al. 2017, round 2).
 * `quantized` is not modified. A site's encoder calls {@link quantizeAndMask} instead, which
 * makes the same words without the intermediate vector.
 */
export function maskVector(quantized: MaskWords, options: MaskOptions, workspace?: MaskWorkspace): MaskWords {
  const out = quantized.slice();
  const streams = maskStreams(options, out.length, bitsOf(out));
  foldSlices(out, streams, workspace ?? new MaskWorkspace(), (slice, at) => out.set(slice, at));
  return out;
}

/** What a site's encoder masks one chunk with: {@link MaskOptions}, its weight and rounding seed. */
export interface MaskedEncodeInput extends MaskOptions {
  /** The site's weight w ∈ [0, 1], multiplied into the clipped value (as {@link quantize}'s). */
  readonly weight: number;
  /** 32-byte seed of the rounding PRG, fixed per attempt. */
  readonly roundingSeed: Uint8Array;
}

/**
 * The site's masked encoding of one chunk, fused: for each slice of {@link MASK_SLICE_WORDS}
 * elements, quantise and weight, and fold the self mask and each pairwise mask in — in one native
 * pass straight into the output where the native quantiser is built
 * ({@link MaskWorkspace.quantizeMasked}), else into `workspace`'s slice, copied out after. The
 * words equal `maskVector(quantize(x, options, input), input)` bit for bit; nothing is allocated per
 * slice but keystream bytes, and `x` is only read. The words go to `out` when given (x.length words
 * of the modulus's width: a buffer the caller sends as it is), else to a new array.
 */
export function quantizeAndMask(x: Float32Array, options: QuantizeOptions, input: MaskedEncodeInput, workspace?: MaskWorkspace, out?: MaskWords): MaskWords {
  const p = quantizeParams(options, input.weight);
  const bits = options.modulusBits;
  const offset = input.wordOffset ?? 0;
  if (out !== undefined && (out.length !== x.length || bitsOf(out) !== bits)) {
    throw new SecAggError('INVALID_ARGUMENT', `the output needs ${x.length} words of ${bits} bits`, { words: out.length, values: x.length });
  }
  out ??= bits === 32 ? new Uint32Array(x.length) : new Uint16Array(x.length);
  // The masks' seeds are checked even for no words, as maskVector checks them; the rounding seed
  // only when there are words to round, as quantize does.
  const streams = maskStreams(input, x.length, bits);
  if (x.length === 0) return out;
  const rounding = new Keystream(input.roundingSeed, offset, x.length, 32);
  const ws = workspace ?? new MaskWorkspace();
  for (let at = 0; at < x.length; at += MASK_SLICE_WORDS) {
    const n = Math.min(MASK_SLICE_WORDS, x.length - at);
    if (ws.quantizeMasked(x, { from: at, count: n, offset }, rounding, streams, bits, p, out.subarray(at, at + n))) continue;
    ws.quantize(x, at, n, rounding, bits, p, offset);
    ws.fold(streams, bits, n);
    const slice = ws.slice(bits, n);
    out.set(slice, at);
  }
  return out;
}

/** The self mask (+1) and each pairwise mask (its sign), checking that no peer is listed twice. */
function maskSeeds(options: MaskOptions): { readonly seed: Uint8Array; readonly sign: 1 | -1 }[] {
  const seeds: { seed: Uint8Array; sign: 1 | -1 }[] = [{ seed: options.selfSeed, sign: 1 }];
  const peers = new Set<string>();
  for (const { peer, seed, sign } of options.pairwise) {
    if (peers.has(peer)) throw new SecAggError('INVALID_ARGUMENT', 'pairwise mask listed twice for one peer', { peer });
    if (sign !== 1 && sign !== -1) throw new SecAggError('INVALID_ARGUMENT', 'mask sign must be +1 or -1', { sign });
    peers.add(peer);
    seeds.push({ seed, sign });
  }
  return seeds;
}

/** {@link maskSeeds}' keystreams over words [wordOffset, wordOffset + count). */
function maskStreams(options: MaskOptions, count: number, bits: MaskBits): SignedStream[] {
  const offset = options.wordOffset ?? 0;
  return maskSeeds(options).map(({ seed, sign }) => ({ stream: new Keystream(seed, offset, count, bits), sign }));
}

/** The two models' bytes of one range of a tensor, little-endian F32 or BF16, as a site's delta reads them. */
export interface DeltaSources {
  readonly local: Uint8Array;
  readonly localBf16: boolean;
  readonly global: Uint8Array;
  readonly globalBf16: boolean;
}

/** True where this process has the native masker {@link maskDelta} uses (AVX-512 and AES-NI). */
export function maskDeltaAvailable(): boolean {
  return nativeKernels()?.maskDelta !== undefined;
}

/**
 * The site's masked encoding of Δ = local − global straight from the two models' bytes into `out`
 * (one word per value, of the modulus's width): `quantizeAndMask(Δ)` bit for bit, Δ in f32 as the
 * agent's delta kernels make it. The native masker (native/mask.c) makes Δ, the rounding words and
 * the keystreams block by block in L1 and writes each word once; Δ is never written out, and
 * nothing is allocated per block. False, having written nothing, where this process has no native
 * masker (AVX-512 and AES-NI) or the scale is not finite: the caller computes Δ and calls
 * {@link quantizeAndMask}. Throws what quantizeAndMask throws (bad options even where it then
 * returns false), NON_FINITE with Δ's index in the whole vector.
 */
export function maskDelta(sources: DeltaSources, options: QuantizeOptions, input: MaskedEncodeInput, out: MaskWords): boolean {
  const kernel = nativeKernels()?.maskDelta;
  const p = quantizeParams(options, input.weight);
  if (kernel === undefined || !Number.isFinite(p.scale)) return false;
  const bits = options.modulusBits;
  const n = sources.local.length / (sources.localBf16 ? 2 : 4);
  if (!(Number.isInteger(n) && sources.global.length === n * (sources.globalBf16 ? 2 : 4))) {
    throw new SecAggError('INVALID_ARGUMENT', 'the two models must give as many whole values', { local: sources.local.length, global: sources.global.length });
  }
  if (out.length !== n || bitsOf(out) !== bits) throw new SecAggError('INVALID_ARGUMENT', `the output needs ${n} words of ${bits} bits`, { words: out.length, values: n });
  const offset = input.wordOffset ?? 0;
  const seeds = maskSeeds(input);
  for (const { seed } of seeds) checkStream(seed, offset, n, bits);
  if (n === 0) return true;
  checkStream(input.roundingSeed, offset, n, 32);
  const keys = new Uint8Array(32 * (seeds.length + 1));
  keys.set(input.roundingSeed);
  seeds.forEach(({ seed }, j) => keys.set(seed, 32 * (j + 1)));
  const minus = Uint8Array.from(seeds, ({ sign }) => (sign === -1 ? 1 : 0));
  const found = kernel(bytesOf(out), sources.local, sources.localBf16, sources.global, sources.globalBf16, keys, minus, offset, p.clip, p.zero, p.scale, p.weight, bits === 32);
  if (found >= 0) throw new SecAggError('NON_FINITE', 'update holds NaN or ±Infinity', { index: offset + found });
  return true;
}

/**
 * Copies each slice of `words` into `ws`, folds every stream into it (the streams start at
 * words[0]) and hands it to `consume` with its position; `words` itself is left as it was.
 */
function foldSlices(words: MaskWords, streams: readonly SignedStream[], ws: MaskWorkspace, consume: (slice: MaskWords, at: number, n: number) => void): void {
  const bits = bitsOf(words);
  for (let at = 0; at < words.length; at += MASK_SLICE_WORDS) {
    const n = Math.min(MASK_SLICE_WORDS, words.length - at);
    const slice = ws.slice(bits, n);
    slice.set(words.subarray(at, at + n));
    ws.fold(streams, bits, n);
    consume(slice, at, n);
  }
}

function bitsOf(words: MaskWords): MaskBits {
  if (words instanceof Uint32Array) return 32;
  if (words instanceof Uint16Array) return 16;
  throw new SecAggError('INVALID_ARGUMENT', 'masked vectors must be Uint32Array or Uint16Array');
}

/** acc += x mod 2^b, in place (the coordinator's running sum of masked inputs). */
export function addModular(acc: MaskWords, x: MaskWords): void {
  if (acc.length !== x.length || acc.constructor !== x.constructor) {
    throw new SecAggError('INVALID_ARGUMENT', 'modular add needs vectors of the same length and word width', { acc: acc.length, x: x.length });
  }
  for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + x[i]!;
}

/**
 * Removes masks from a sum of masked inputs (Bonawitz et al. 2017, round 4): subtracts each
 * survivor's PRG(b_u), and for each dropped site v and surviving neighbour u, the term
 * sign(u,v)·PRG(s_{u,v}) that u added and v's missing input no longer cancels. Returns the sum of
 * the survivors' quantized inputs mod 2^b; `sum` is not modified ({@link unmaskSumInPlace} is the
 * coordinator's form, without the copy).
 */
export function unmaskSum(sum: MaskWords, options: UnmaskOptions, workspace?: MaskWorkspace): MaskWords {
  const out = sum.slice();
  unmaskSumInPlace(out, options, workspace);
  return out;
}

/**
 * {@link unmaskSum} in place: every mask removed from `sum` slice by slice through `workspace`,
 * one cipher per seed for the whole call and no other allocation per slice.
 */
export function unmaskSumInPlace(sum: MaskWords, options: UnmaskOptions, workspace?: MaskWorkspace): void {
  const streams = unmaskStreams(options, sum.length, bitsOf(sum));
  if (sum.length > 0) foldSlices(sum, streams, workspace ?? new MaskWorkspace(), (slice, at) => sum.set(slice, at));
}

/**
 * The coordinator's unmasking and decoding of one slice of the sum, fused: equal bit for bit to
 * `dequantizeSum(unmaskSum(sum, options), sites, quantize)`, each slice decoded while it is in
 * `workspace` (with its checks: OVERFLOW_POSSIBLE, INVALID_ARGUMENT). `sum` is not modified.
 */
export function unmaskDequantize(
  sum: MaskWords,
  sites: number,
  quantize: QuantizeOptions,
  options: UnmaskOptions,
  workspace?: MaskWorkspace,
  out: Float64Array = new Float64Array(sum.length),
): Float64Array {
  const { shift, step } = dequantizeParams(sum, sites, quantize, out);
  const bits = bitsOf(sum);
  const streams = unmaskStreams(options, sum.length, bits);
  const ws = workspace ?? new MaskWorkspace();
  if (sum.length > 0) foldSlices(sum, streams, ws, (_, at, n) => ws.decode(bits, n, shift, step, out, at));
  return out;
}

/** Survivors' self masks (−1) and dropped pairs' masks (the sign the survivor added, negated). */
function unmaskStreams(options: UnmaskOptions, count: number, bits: MaskBits): SignedStream[] {
  const offset = options.wordOffset ?? 0;
  const streams: SignedStream[] = options.survivorSelfSeeds.map((seed) => ({ stream: new Keystream(seed, offset, count, bits), sign: -1 }));
  const pairs = new Set<string>();
  for (const { survivor, dropped, seed } of options.droppedPairs) {
    const key = JSON.stringify([survivor, dropped]);
    if (pairs.has(key)) throw new SecAggError('INVALID_ARGUMENT', 'dropped pair listed twice', { survivor, dropped });
    pairs.add(key);
    streams.push({ stream: new Keystream(seed, offset, count, bits), sign: pairwiseSign(survivor, dropped) === 1 ? -1 : 1 });
  }
  return streams;
}
