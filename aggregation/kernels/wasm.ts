/**
 * Loading the WebAssembly SIMD kernels, and {@link Kernels}: one typed-array interface over them
 * with the plain-JS reference as fallback where SIMD (or shared memory) is unavailable.
 *
 * The module imports one shared memory, so worker threads can instantiate it over the same
 * WebAssembly.Memory (see coordinator/aggregate/kernel-pool.ts); here, in one thread, operands are copied
 * through a small window of the instance's own memory.
 */
import { Buffer } from 'node:buffer';
import { AggregationError } from '../errors.js';
import { type WireEncoding, encodedRange } from './encoding.js';
import { KERNELS_WASM_BASE64 } from './kernels-wasm.js';
import { type NativeKernels, bytesOf, nativeKernels } from '../native.js';
import {
  accBf16Ref,
  accF32Ref,
  accInt8Ref,
  addModU16Ref,
  addModU32Ref,
  deltaToBf16Ref,
  deltaToF32Ref,
  findNonFiniteBf16Ref,
  findNonFiniteRef,
  subModU16Ref,
  subModU32Ref,
} from './reference.js';

/** The raw exports of kernels.wasm: byte addresses in its memory, counts in elements. */
export interface KernelExports {
  acc_f32(acc: number, src: number, n: number, w: number): void;
  acc_bf16(acc: number, src: number, n: number, w: number): void;
  /** acc_f32 of four sources in order, in one pass over acc. */
  acc_f32_x4(acc: number, s0: number, s1: number, s2: number, s3: number, n: number, w0: number, w1: number, w2: number, w3: number): void;
  /** acc_bf16 of four sources in order, in one pass over acc. */
  acc_bf16_x4(acc: number, s0: number, s1: number, s2: number, s3: number, n: number, w0: number, w1: number, w2: number, w3: number): void;
  acc_int8(acc: number, src: number, skip: number, n: number, w: number): void;
  add_mod_u32(acc: number, src: number, n: number): void;
  sub_mod_u32(acc: number, src: number, n: number): void;
  add_mod_u16(acc: number, src: number, n: number): void;
  sub_mod_u16(acc: number, src: number, n: number): void;
  find_non_finite(src: number, n: number): number;
  find_non_finite_bf16(src: number, n: number): number;
  /** dst[i] = f32(l[i]) − f32(g[i]) for n values, as f32 (ob 0) or rounded to bf16 (ob 1); lh / gh: 1 when that source is bf16, 0 when f32. */
  delta(dst: number, l: number, g: number, n: number, lh: number, gh: number, ob: number): void;
  /** Zeroes n bytes at dst (memory.fill). */
  zero(dst: number, n: number): void;
}

/** Largest memory the module declares: 65536 pages of 64 KiB (4 GiB, the wasm32 limit). */
export const KERNEL_MAX_PAGES = 65536;
/** Bytes in a WebAssembly page. */
export const WASM_PAGE_BYTES = 65536;

/** The bytes of kernels.wasm. */
export function kernelWasmBytes(): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(Buffer.from(KERNELS_WASM_BASE64, 'base64'));
}

/**
 * Whether this runtime can run the kernels: WebAssembly SIMD and shared memories. False on
 * runtimes without them; callers then use {@link referenceKernels}.
 */
export function wasmKernelsSupported(): boolean {
  try {
    if (typeof WebAssembly !== 'object' || !WebAssembly.validate(kernelWasmBytes())) return false;
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    return true;
  } catch {
    return false;
  }
}

/** Compiles kernels.wasm (synchronous: the module is 2 KB). A Module can be posted to workers. */
export function compileKernelModule(): WebAssembly.Module {
  return new WebAssembly.Module(kernelWasmBytes());
}

/** A shared memory the module accepts: `pages` initial pages, growable to {@link KERNEL_MAX_PAGES}. */
export function createKernelMemory(pages: number): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: pages, maximum: KERNEL_MAX_PAGES, shared: true });
}

/** Instantiates the module over `memory` (synchronous). */
export function instantiateKernels(module: WebAssembly.Module, memory: WebAssembly.Memory): KernelExports {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  return instance.exports as unknown as KernelExports;
}

/**
 * The kernels over typed arrays. Weighted kernels compute acc = f32(acc + f32(w·x)) per element,
 * in order; results are equal bit for bit whichever implementation runs (NaN payloads aside).
 */
export interface Kernels {
  /** True for WebAssembly SIMD, false for the plain-JS reference. */
  readonly simd: boolean;
  /** acc[i] += w · src[i] for i < acc.length. */
  accF32(acc: Float32Array, src: Float32Array, w: number): void;
  /** acc[i] += w · bf16→f32(src[i]) for i < acc.length. */
  accBf16(acc: Float32Array, src: Uint16Array, w: number): void;
  /** acc[i] += w · scale·q over acc.length values of an int8 block stream, `skip` values into its first block. */
  accInt8(acc: Float32Array, bytes: Uint8Array, w: number, skip?: number): void;
  /**
   * Decodes acc.length values of `encoding` from little-endian wire bytes at any byte offset and
   * adds them with weight w (for int8, `bytes` starts at a block's scale, `skip` values before).
   */
  accEncoded(acc: Float32Array, bytes: Uint8Array, encoding: WireEncoding, w: number, skip?: number): void;
  addModU32(acc: Uint32Array, src: Uint32Array): void;
  subModU32(acc: Uint32Array, src: Uint32Array): void;
  addModU16(acc: Uint16Array, src: Uint16Array): void;
  subModU16(acc: Uint16Array, src: Uint16Array): void;
  /** Index of the first NaN or ±Infinity, or -1. */
  findNonFinite(values: Float32Array): number;
  /** Index of the first bf16 NaN or ±Infinity among little-endian bf16 `bytes` (any offset), or -1. */
  findNonFiniteBf16(bytes: Uint8Array): number;
  /**
   * A delta in bf16: dst[i] = bf16(local[i] − global[i]) for i < dst.length, the subtraction in
   * f32, rounded to nearest even. `local` and `global` are little-endian bytes of F32 or BF16
   * values, at any byte offset (no copy to align them first).
   */
  deltaToBf16(dst: Uint16Array, local: Uint8Array, localDtype: 'F32' | 'BF16', global: Uint8Array, globalDtype: 'F32' | 'BF16'): void;
  /** {@link deltaToBf16} without the rounding: dst[i] = local[i] − global[i] in f32. */
  deltaToF32(dst: Float32Array, local: Uint8Array, localDtype: 'F32' | 'BF16', global: Uint8Array, globalDtype: 'F32' | 'BF16'): void;
}

/**
 * WebAssembly SIMD kernels where supported, else {@link referenceKernels}; their delta is the
 * native module's where it is built, unless `native` is false (tests compare the two).
 */
export function createKernels(options: { readonly reference?: boolean; readonly native?: boolean } = {}): Kernels {
  return options.reference === true || !wasmKernelsSupported() ? referenceKernels : new WasmKernels(options.native === false ? undefined : nativeKernels()?.delta);
}

/** The plain-JS reference kernels. */
export const referenceKernels: Kernels = Object.freeze({
  simd: false,
  accF32: (acc: Float32Array, src: Float32Array, w: number) => accF32Ref(acc, checkedSrc(acc, src), w),
  accBf16: (acc: Float32Array, src: Uint16Array, w: number) => accBf16Ref(acc, checkedSrc(acc, src), w),
  accInt8: (acc: Float32Array, bytes: Uint8Array, w: number, skip = 0) => accInt8Ref(acc, checkedInt8(acc, bytes, skip), w, skip),
  accEncoded(acc: Float32Array, bytes: Uint8Array, encoding: WireEncoding, w: number, skip = 0): void {
    if (encoding === 'int8') return accInt8Ref(acc, checkedInt8(acc, bytes, skip), w, skip);
    const size = encoding === 'f32' ? 4 : 2;
    const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice(); // a typed view needs alignment
    if (encoding === 'f32') accF32Ref(acc, checkedSrc(acc, new Float32Array(aligned.buffer, aligned.byteOffset, bytes.length >>> 2)), w);
    else accBf16Ref(acc, checkedSrc(acc, new Uint16Array(aligned.buffer, aligned.byteOffset, bytes.length >>> 1)), w);
  },
  addModU32: (acc: Uint32Array, src: Uint32Array) => addModU32Ref(acc, checkedSrc(acc, src)),
  subModU32: (acc: Uint32Array, src: Uint32Array) => subModU32Ref(acc, checkedSrc(acc, src)),
  addModU16: (acc: Uint16Array, src: Uint16Array) => addModU16Ref(acc, checkedSrc(acc, src)),
  subModU16: (acc: Uint16Array, src: Uint16Array) => subModU16Ref(acc, checkedSrc(acc, src)),
  findNonFinite: findNonFiniteRef,
  findNonFiniteBf16: findNonFiniteBf16Ref,
  deltaToBf16: (dst: Uint16Array, local: Uint8Array, localDtype: 'F32' | 'BF16', global: Uint8Array, globalDtype: 'F32' | 'BF16') =>
    deltaToBf16Ref(dst, checkedDelta(dst, local, localDtype), localDtype, checkedDelta(dst, global, globalDtype), globalDtype),
  deltaToF32: (dst: Float32Array, local: Uint8Array, localDtype: 'F32' | 'BF16', global: Uint8Array, globalDtype: 'F32' | 'BF16') =>
    deltaToF32Ref(dst, checkedDelta(dst, local, localDtype), localDtype, checkedDelta(dst, global, globalDtype), globalDtype),
});

/** Elements per pass through the instance's memory window. */
const PIECE = 16384;
const ACC_AT = 0;
const SRC_AT = PIECE * 4;
/** A third operand (a delta's output), after the first two. */
const DST_AT = SRC_AT + PIECE * 4;
const WINDOW_PAGES = Math.ceil((DST_AT + PIECE * 4 + 1024) / WASM_PAGE_BYTES);

/** The SIMD kernels in this thread, operands copied through a window of PIECE elements. */
class WasmKernels implements Kernels {
  readonly simd = true;
  private readonly memory = createKernelMemory(WINDOW_PAGES);
  private readonly k = instantiateKernels(compileKernelModule(), this.memory);
  private readonly bytes = new Uint8Array(this.memory.buffer);

  /** `nativeDelta`: the native module's delta (AVX-512), reading and writing in place; else the WebAssembly one's. */
  constructor(private readonly nativeDelta: NativeKernels['delta']) {}

  accF32(acc: Float32Array, src: Float32Array, w: number): void {
    this.accEncoded(acc, bytesOf(checkedSrc(acc, src)), 'f32', w);
  }

  accBf16(acc: Float32Array, src: Uint16Array, w: number): void {
    this.accEncoded(acc, bytesOf(checkedSrc(acc, src)), 'bf16', w);
  }

  accInt8(acc: Float32Array, bytes: Uint8Array, w: number, skip = 0): void {
    this.accEncoded(acc, bytes, 'int8', w, skip);
  }

  accEncoded(acc: Float32Array, bytes: Uint8Array, encoding: WireEncoding, w: number, skip = 0): void {
    if (encoding === 'int8') checkedInt8(acc, bytes, skip);
    else if (bytes.length < acc.length * (encoding === 'f32' ? 4 : 2)) throw shortSource(acc.length, bytes.length, encoding);
    const accBytes = bytesOf(acc);
    for (let done = 0; done < acc.length; done += PIECE) {
      const m = Math.min(PIECE, acc.length - done);
      const r = encodedRange(encoding, skip + done, m);
      this.bytes.set(accBytes.subarray(done * 4, (done + m) * 4), ACC_AT);
      this.bytes.set(bytes.subarray(r.byteOffset, r.byteOffset + r.byteLength), SRC_AT);
      if (encoding === 'f32') this.k.acc_f32(ACC_AT, SRC_AT, m, w);
      else if (encoding === 'bf16') this.k.acc_bf16(ACC_AT, SRC_AT, m, w);
      else this.k.acc_int8(ACC_AT, SRC_AT, r.skip, m, w);
      accBytes.set(this.bytes.subarray(ACC_AT, ACC_AT + m * 4), done * 4);
    }
  }

  addModU32(acc: Uint32Array, src: Uint32Array): void {
    this.words(acc, checkedSrc(acc, src), 4, (n) => this.k.add_mod_u32(ACC_AT, SRC_AT, n));
  }

  subModU32(acc: Uint32Array, src: Uint32Array): void {
    this.words(acc, checkedSrc(acc, src), 4, (n) => this.k.sub_mod_u32(ACC_AT, SRC_AT, n));
  }

  addModU16(acc: Uint16Array, src: Uint16Array): void {
    this.words(acc, checkedSrc(acc, src), 2, (n) => this.k.add_mod_u16(ACC_AT, SRC_AT, n));
  }

  subModU16(acc: Uint16Array, src: Uint16Array): void {
    this.words(acc, checkedSrc(acc, src), 2, (n) => this.k.sub_mod_u16(ACC_AT, SRC_AT, n));
  }

  findNonFinite(values: Float32Array): number {
    const src = bytesOf(values);
    for (let done = 0; done < values.length; done += PIECE) {
      const m = Math.min(PIECE, values.length - done);
      this.bytes.set(src.subarray(done * 4, (done + m) * 4), SRC_AT);
      const at = this.k.find_non_finite(SRC_AT, m);
      if (at >= 0) return done + at;
    }
    return -1;
  }

  findNonFiniteBf16(bytes: Uint8Array): number {
    const n = bytes.length >>> 1;
    for (let done = 0; done < n; done += PIECE) {
      const m = Math.min(PIECE, n - done);
      this.bytes.set(bytes.subarray(done * 2, (done + m) * 2), SRC_AT);
      const at = this.k.find_non_finite_bf16(SRC_AT, m);
      if (at >= 0) return done + at;
    }
    return -1;
  }

  deltaToBf16(dst: Uint16Array, local: Uint8Array, localDtype: 'F32' | 'BF16', global: Uint8Array, globalDtype: 'F32' | 'BF16'): void {
    this.delta(dst, local, localDtype, global, globalDtype);
  }

  deltaToF32(dst: Float32Array, local: Uint8Array, localDtype: 'F32' | 'BF16', global: Uint8Array, globalDtype: 'F32' | 'BF16'): void {
    this.delta(dst, local, localDtype, global, globalDtype);
  }

  private delta(dst: Uint16Array | Float32Array, local: Uint8Array, localDtype: 'F32' | 'BF16', global: Uint8Array, globalDtype: 'F32' | 'BF16'): void {
    checkedDelta(dst, local, localDtype);
    checkedDelta(dst, global, globalDtype);
    const ls = localDtype === 'F32' ? 4 : 2;
    const gs = globalDtype === 'F32' ? 4 : 2;
    const os = dst.BYTES_PER_ELEMENT;
    const out = bytesOf(dst);
    if (this.nativeDelta !== undefined) {
      this.nativeDelta(out, local.subarray(0, dst.length * ls), ls === 2, global.subarray(0, dst.length * gs), gs === 2, os === 2);
      return;
    }
    for (let done = 0; done < dst.length; done += PIECE) {
      const m = Math.min(PIECE, dst.length - done);
      this.bytes.set(local.subarray(done * ls, (done + m) * ls), ACC_AT);
      this.bytes.set(global.subarray(done * gs, (done + m) * gs), SRC_AT);
      this.k.delta(DST_AT, ACC_AT, SRC_AT, m, ls === 2 ? 1 : 0, gs === 2 ? 1 : 0, os === 2 ? 1 : 0);
      out.set(this.bytes.subarray(DST_AT, DST_AT + m * os), done * os);
    }
  }

  private words(acc: Uint32Array | Uint16Array, src: Uint32Array | Uint16Array, size: number, run: (n: number) => void): void {
    const a = bytesOf(acc);
    const s = bytesOf(src);
    for (let done = 0; done < acc.length; done += PIECE) {
      const m = Math.min(PIECE, acc.length - done);
      this.bytes.set(a.subarray(done * size, (done + m) * size), ACC_AT);
      this.bytes.set(s.subarray(done * size, (done + m) * size), SRC_AT);
      run(m);
      a.set(this.bytes.subarray(ACC_AT, ACC_AT + m * size), done * size);
    }
  }
}

function checkedDelta(dst: Uint16Array | Float32Array, src: Uint8Array, dtype: 'F32' | 'BF16'): Uint8Array {
  const need = dst.length * (dtype === 'F32' ? 4 : 2);
  if (src.length < need) throw new AggregationError('INVALID_ARGUMENT', `${dtype} source of ${src.length} bytes is shorter than ${dst.length} values`, { dst: dst.length, src: src.length });
  return src;
}

function checkedSrc<T extends { length: number }>(acc: { length: number }, src: T): T {
  if (src.length < acc.length) throw new AggregationError('INVALID_ARGUMENT', `source of ${src.length} values is shorter than the accumulator (${acc.length})`, { acc: acc.length, src: src.length });
  return src;
}

function checkedInt8(acc: Float32Array, bytes: Uint8Array, skip: number): Uint8Array {
  if (!Number.isInteger(skip) || skip < 0 || skip >= 128) throw new AggregationError('INVALID_ARGUMENT', `int8 skip ${skip} is not in [0, 128)`, { skip });
  const need = encodedRange('int8', skip, acc.length).byteLength;
  if (bytes.length < need) throw shortSource(acc.length, bytes.length, 'int8');
  return bytes;
}

function shortSource(values: number, bytes: number, encoding: WireEncoding): AggregationError {
  return new AggregationError('INVALID_ARGUMENT', `${bytes} bytes hold fewer than ${values} ${encoding} values`, { values, bytes, encoding });
}
