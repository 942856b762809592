/**
 * The reusable memory of the fused masking paths (mask.ts): one slice of masked words, into which
 * an update's values are quantised and keystream slices are folded (added or subtracted modulo
 * 2^b), and from which a sum is decoded. With WebAssembly SIMD (mask-kernels.wat) the slice lives
 * in the kernels' own memory: the rounding words and keystream slices are written there
 * (aggregation/native.ts; copied in from node:crypto where it is unavailable), values are copied
 * in, quantised in WebAssembly and folded, four keystreams of either sign at a time in one pass; a
 * sum decodes there too. Where the native AVX-512 quantiser is built, a site's words skip the slice
 * ({@link MaskWorkspace.quantizeMasked}): values are read in place, and each word is quantised and
 * takes its masks on the way to the caller's buffer. Elsewhere, or on a big-endian host, the same
 * folds run in plain JS. Nothing is allocated per slice but typed-array views and the fold's short
 * lists of streams, and, without the native keystream, the bytes Node's `cipher.update` hands back
 * (it cannot write into a caller's buffer).
 *
 * A workspace belongs to one caller (a site's encoder, the coordinator's unmasking) and one
 * thread; create one per such caller rather than per call, as compiling the kernels costs a
 * fraction of a millisecond.
 */
import { Buffer } from 'node:buffer';
import { type NativeKernels, nativeKernels } from '../native.js';
import { invariant } from '../invariant.js';
import { SecAggError } from './errors.js';
import { MASK_KERNELS_WASM_BASE64 } from './mask-kernels-wasm.js';
import { type MaskBits, type MaskWords, type Keystream, add16, add32, sub16, sub32 } from './prg.js';
import { type QuantizeParams, quantizeRange } from './quantize.js';

/** The exports of mask-kernels.wat: byte addresses in its memory, counts in words, m = 0 adds, −1 subtracts. */
interface MaskKernelExports {
  readonly memory: WebAssembly.Memory;
  quantize_f32(dst: number, x: number, u: number, n: number, clip: number, zero: number, scale: number, weight: number, wide: number): number;
  fold4_mod_u32(acc: number, src: number, stride: number, n: number, m: number): void;
  fold4_mod_u16(acc: number, src: number, stride: number, n: number, m: number): void;
  fold4s_mod_u32(acc: number, src: number, stride: number, n: number, m0: number, m1: number, m2: number, m3: number): void;
  fold4s_mod_u16(acc: number, src: number, stride: number, n: number, m0: number, m1: number, m2: number, m3: number): void;
  fold_mod_u32(acc: number, src: number, n: number, m: number): void;
  fold_mod_u16(acc: number, src: number, n: number, m: number): void;
  dequant_u32_f64(dst: number, src: number, n: number, shift: number, step: number): void;
}

/**
 * Words per slice of the fused loops. Each keystream call makes a slice's worth (128 KiB for
 * 32-bit words: measured within a few per cent of 256 KiB calls), and the window — the slice, four
 * keystream slices and a decoded f64 slice, 896 KiB — stays in a core's L2.
 */
export const MASK_SLICE_WORDS = 32 * 1024;

/** Where a slice of {@link MaskWorkspace.quantizeMasked} lies: its first value in x, its length, and x's offset in the whole vector. */
export interface SliceAt {
  readonly from: number;
  readonly count: number;
  readonly offset: number;
}

/** Throws unless `count` words fit one slice. */
function checkSliceCount(count: number): void {
  if (!(Number.isSafeInteger(count) && count >= 0 && count <= MASK_SLICE_WORDS)) {
    throw new SecAggError('INVALID_ARGUMENT', `a mask slice holds at most ${MASK_SLICE_WORDS} words`, { count });
  }
}

/** A keystream to fold and the sign it is folded with. */
export interface SignedStream {
  readonly stream: Keystream;
  readonly sign: 1 | -1;
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
const SLICE_BYTES = MASK_SLICE_WORDS * 4;
const ACC_AT = 0;
const SRC_AT = SLICE_BYTES;
/** The rounding words quantize_f32 reads: the second source slot. */
const ROUNDING_AT = SRC_AT + SLICE_BYTES;
const F64_AT = SRC_AT + 4 * SLICE_BYTES;
/** Bytes the window needs; mask-kernels.wat declares at least this much memory. */
const WINDOW_BYTES = F64_AT + MASK_SLICE_WORDS * 8;

/** The mask kernels, or undefined where this runtime lacks WebAssembly SIMD. */
function instantiateMaskKernels(): MaskKernelExports | undefined {
  if (typeof WebAssembly !== 'object') return undefined;
  const bytes = Uint8Array.from(Buffer.from(MASK_KERNELS_WASM_BASE64, 'base64'));
  if (!WebAssembly.validate(bytes)) return undefined;
  const k = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as unknown as MaskKernelExports;
  if (k.memory.buffer.byteLength < WINDOW_BYTES) throw new SecAggError('INVALID_ARGUMENT', 'mask-kernels.wat declares less memory than the window needs', { bytes: k.memory.buffer.byteLength });
  return k;
}

/**
 * How a {@link MaskWorkspace} folds: `reference` forces the plain-JS loops, `native: false` keeps
 * quantising in WebAssembly where the native quantiser is built (tests compare all three).
 */
export interface MaskWorkspaceOptions {
  readonly reference?: boolean;
  readonly native?: boolean;
}

/** One slice of masked words and the kernels that fold keystreams into it. */
export class MaskWorkspace {
  /** True when the folds run in WebAssembly SIMD. */
  readonly simd: boolean;
  /** The native module's quantiser and fold (AVX-512), where they are built and this workspace uses SIMD. */
  private readonly quantizeNative: NonNullable<NativeKernels['quantizeF32']> | undefined;
  private readonly foldNative: NonNullable<NativeKernels['foldWords']> | undefined;

  /** True when values are quantised and masked by the native module (AVX-512, {@link quantizeMasked}), not in WebAssembly. */
  get nativeQuantize(): boolean {
    return this.quantizeNative !== undefined && this.foldNative !== undefined;
  }
  private readonly k: MaskKernelExports | undefined;
  private readonly window: ArrayBufferLike;
  private readonly bytes: Uint8Array;

  constructor(options: MaskWorkspaceOptions = {}) {
    this.k = options.reference !== true && LITTLE_ENDIAN ? instantiateMaskKernels() : undefined;
    this.simd = this.k !== undefined;
    const native = this.simd && options.native !== false ? nativeKernels() : undefined;
    this.quantizeNative = native?.quantizeF32;
    this.foldNative = native?.foldWords;
    // The kernels' memory is never grown, so its buffer (and views of it) stay attached.
    this.window = this.k?.memory.buffer ?? new ArrayBuffer(SLICE_BYTES);
    this.bytes = new Uint8Array(this.window);
  }

  /**
   * The slice: `count` ≤ {@link MASK_SLICE_WORDS} words of `bits` bits, to be filled by the
   * caller, folded into by {@link fold}, and read back before the next call to this method.
   */
  slice(bits: MaskBits, count: number): MaskWords {
    checkSliceCount(count);
    return bits === 32 ? new Uint32Array(this.window, ACC_AT, count) : new Uint16Array(this.window, ACC_AT, count);
  }

  /**
   * Fills the slice ({@link slice} with these `bits` and `count`) with the words of x[from, from +
   * count), rounded by the next `count` words of `rounding`: quantize.ts's `quantizeRange`, bit for
   * bit, and its NON_FINITE error (`offset` is x's element offset in the whole vector).
   */
  quantize(x: Float32Array, from: number, count: number, rounding: Keystream, bits: MaskBits, p: QuantizeParams, offset: number): void {
    if (this.k !== undefined) {
      rounding.into(this.bytes.subarray(ROUNDING_AT, ROUNDING_AT + count * 4));
      new Float32Array(this.window, SRC_AT, count).set(x.subarray(from, from + count));
      if (this.k.quantize_f32(ACC_AT, SRC_AT, ROUNDING_AT, count, p.clip, p.zero, p.scale, p.weight, bits === 32 ? 1 : 0) === 0) return;
      // A NaN or ±Infinity: the JS formula finds the first one and throws with its index.
      quantizeRange(x, from, count, new Uint32Array(this.window, ROUNDING_AT, count), this.slice(bits, count), 0, p, offset);
      return;
    }
    quantizeRange(x, from, count, rounding.words32(rounding.take(count)), this.slice(bits, count), 0, p, offset);
  }

  /**
   * {@link quantize} and {@link fold} at once, straight into `out` (`count` words of `bits` bits),
   * by the native kernels: x is read where it lies, the rounding words and keystreams go into the
   * window, and each word is quantised, takes its first four keystream words and is stored once,
   * where it goes; further streams are folded into `out` four at a time. Nothing passes through the
   * slice, so nothing is copied out of it. False, having done nothing, where this workspace has no
   * native quantiser: the caller quantises, folds and copies.
   */
  quantizeMasked(x: Float32Array, at: SliceAt, rounding: Keystream, streams: readonly SignedStream[], bits: MaskBits, p: QuantizeParams, out: MaskWords): boolean {
    const quantizeF32 = this.quantizeNative;
    const foldWords = this.foldNative;
    if (quantizeF32 === undefined || foldWords === undefined || !Number.isFinite(p.scale)) return false;
    const { from, count, offset } = at;
    // The rounding words take the slice's place: no more of them than it holds.
    checkSliceCount(count);
    if (out.length !== count || from + count > x.length) throw new SecAggError('INVALID_ARGUMENT', `the output needs ${count} words, and x as many values from ${from}`, { words: out.length, values: x.length });
    const u = this.bytes.subarray(ACC_AT, ACC_AT + count * 4);
    rounding.into(u);
    const dst = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    const sources = this.bytes.subarray(SRC_AT, SRC_AT + 4 * SLICE_BYTES);
    const wide = bits === 32;
    for (let i = 0; i === 0 || i < streams.length; i += 4) {
      const four = streams.slice(i, i + 4);
      four.forEach((s, j) => s.stream.into(this.src(j, dst.byteLength)));
      const negative = four.reduce((m, s, j) => (s.sign === -1 ? m | (1 << j) : m), 0);
      if (i > 0) foldWords(dst, sources, SLICE_BYTES, four.length, negative, wide);
      else if (quantizeF32(dst, new Uint8Array(x.buffer, x.byteOffset + from * 4, count * 4), u, sources, SLICE_BYTES, four.length, negative, p.clip, p.zero, p.scale, p.weight, wide) !== 0) {
        // A NaN or ±Infinity: the JS formula finds the first one and throws with its index.
        quantizeRange(x, from, count, new Uint32Array(this.window, ACC_AT, count), out, 0, p, offset);
        invariant(false, 'the native quantiser and quantizeRange agree on which values are finite');
      }
    }
    return true;
  }

  /**
   * slice[0, count) += Σ sign · the next `count` words of each stream, mod 2^b, where the slice is
   * the one {@link slice} last returned with these `bits` and `count`.
   */
  fold(streams: readonly SignedStream[], bits: MaskBits, count: number): void {
    const k = this.k;
    if (k === undefined) {
      for (const s of streams) this.foldOne(s, bits, count);
      return;
    }
    // Modular addition commutes: fold four keystreams a pass, those of one sign together where
    // they fill a pass (its kernel is the cheaper), a mixed four otherwise; the rest singly.
    const sorted = [...streams.filter((s) => s.sign === 1), ...streams.filter((s) => s.sign === -1)];
    const m = (s: SignedStream): number => (s.sign === 1 ? 0 : -1);
    let i = 0;
    for (; i + 4 <= sorted.length; i += 4) {
      const four = sorted.slice(i, i + 4);
      four.forEach((s, j) => s.stream.into(this.src(j, (count * bits) / 8)));
      const [a, b, c, d] = four.map(m) as [number, number, number, number];
      // Sorted by sign: the first and last of four agree only when all four do.
      if (a === d) (bits === 32 ? k.fold4_mod_u32 : k.fold4_mod_u16)(ACC_AT, SRC_AT, SLICE_BYTES, count, a);
      else (bits === 32 ? k.fold4s_mod_u32 : k.fold4s_mod_u16)(ACC_AT, SRC_AT, SLICE_BYTES, count, a, b, c, d);
    }
    for (; i < sorted.length; i++) this.foldOne(sorted[i]!, bits, count);
  }

  /**
   * Decodes the slice's `count` words as out[outAt + i] = (word − shift) · step, the formula of
   * dequantizeSum (quantize.ts), bit for bit.
   */
  decode(bits: MaskBits, count: number, shift: number, step: number, out: Float64Array, outAt: number): void {
    if (this.k !== undefined && bits === 32) {
      this.k.dequant_u32_f64(F64_AT, ACC_AT, count, shift, step);
      out.set(new Float64Array(this.window, F64_AT, count), outAt);
      return;
    }
    const words = this.slice(bits, count);
    for (let i = 0; i < count; i++) out[outAt + i] = (words[i]! - shift) * step;
  }

  /** Source slot `j` of the window, its first `bytes` bytes. */
  private src(j: number, bytes: number): Uint8Array {
    return this.bytes.subarray(SRC_AT + j * SLICE_BYTES, SRC_AT + j * SLICE_BYTES + bytes);
  }

  private foldOne({ stream, sign }: SignedStream, bits: MaskBits, count: number): void {
    if (this.k !== undefined) {
      stream.into(this.src(0, (count * bits) / 8));
      if (bits === 32) this.k.fold_mod_u32(ACC_AT, SRC_AT, count, sign === 1 ? 0 : -1);
      else this.k.fold_mod_u16(ACC_AT, SRC_AT, count, sign === 1 ? 0 : -1);
      return;
    }
    const chunk = stream.take(count);
    if (bits === 32) {
      const target = new Uint32Array(this.window, ACC_AT, count);
      if (sign === 1) add32(target, stream.words32(chunk), 0);
      else sub32(target, stream.words32(chunk), 0);
    } else {
      const target = new Uint16Array(this.window, ACC_AT, count);
      if (sign === 1) add16(target, stream.words16(chunk), 0);
      else sub16(target, stream.words16(chunk), 0);
    }
  }
}
