/**
 * Plain-JS reference implementations of the kernels in kernels.wat: the fallback where
 * WebAssembly SIMD is missing, and the definition the WASM results are tested against bit for bit.
 *
 * Each weighted element is t = f32(w·x), acc = f32(acc + t). `Math.fround` of a double product or
 * sum of two f32 values equals the f32 operation (a double holds the exact product of two f32s,
 * and 53 ≥ 2·24 + 2 bits make the rounded double sum round correctly to f32), so these loops
 * match the WASM f32x4 arithmetic exactly.
 */
import { INT8_BLOCK, INT8_BLOCK_BYTES } from './encoding.js';

const f32 = Math.fround;

/** acc[i] += w · src[i] for i < acc.length (f32 arithmetic). */
export function accF32Ref(acc: Float32Array, src: Float32Array, w: number): void {
  const wf = f32(w);
  for (let i = 0; i < acc.length; i++) acc[i] = f32(acc[i]! + f32(wf * src[i]!));
}

/** acc[i] += w · bf16→f32(src[i]) for i < acc.length. */
export function accBf16Ref(acc: Float32Array, src: Uint16Array, w: number): void {
  const wf = f32(w);
  const word = new Uint32Array(1);
  const asF32 = new Float32Array(word.buffer);
  for (let i = 0; i < acc.length; i++) {
    word[0] = src[i]! << 16;
    acc[i] = f32(acc[i]! + f32(wf * asF32[0]!));
  }
}

/**
 * acc[i] += w · (scale · q) for the acc.length values of the int8 block stream `bytes`, which
 * starts at a block's scale; the first `skip` values of that block are not part of the range.
 */
export function accInt8Ref(acc: Float32Array, bytes: Uint8Array, w: number, skip = 0): void {
  const wf = f32(w);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let block = 0;
  let first = skip;
  for (let done = 0; done < acc.length; block += INT8_BLOCK_BYTES, first = 0) {
    const scale = view.getFloat32(block, true);
    const m = Math.min(INT8_BLOCK - first, acc.length - done);
    for (let j = 0; j < m; j++, done++) {
      const value = f32(scale * view.getInt8(block + 4 + first + j));
      acc[done] = f32(acc[done]! + f32(wf * value));
    }
  }
}

// Stores into Uint32Array / Uint16Array reduce modulo 2^32 / 2^16, so plain + and − wrap.

/** acc[i] = acc[i] + src[i] mod 2^32. */
export function addModU32Ref(acc: Uint32Array, src: Uint32Array): void {
  for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + src[i]!;
}

/** acc[i] = acc[i] − src[i] mod 2^32. */
export function subModU32Ref(acc: Uint32Array, src: Uint32Array): void {
  for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! - src[i]!;
}

/** acc[i] = acc[i] + src[i] mod 2^16. */
export function addModU16Ref(acc: Uint16Array, src: Uint16Array): void {
  for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + src[i]!;
}

/** acc[i] = acc[i] − src[i] mod 2^16. */
export function subModU16Ref(acc: Uint16Array, src: Uint16Array): void {
  for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! - src[i]!;
}

/** Index of the first NaN or ±Infinity in `values`, or -1 when all are finite. */
export function findNonFiniteRef(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    // v − v is 0 for every finite v and NaN for NaN and ±Inf: one subtraction, no calls.
    if (v - v !== 0) return i;
  }
  return -1;
}

/** Index of the first bf16 NaN or ±Infinity among little-endian bf16 `bytes`, or -1. */
export function findNonFiniteBf16Ref(bytes: Uint8Array): number {
  for (let i = 0; i + 1 < bytes.length; i += 2) if (((bytes[i]! | (bytes[i + 1]! << 8)) & 0x7f80) === 0x7f80) return i >>> 1;
  return -1;
}

/** The f32 value of element i of little-endian F32 or BF16 bytes (BF16 widens exactly). */
function widened(dtype: 'F32' | 'BF16'): (v: DataView, i: number) => number {
  const f = new Float32Array(1);
  const bits = new Uint32Array(f.buffer);
  return dtype === 'F32'
    ? (v, i) => v.getFloat32(i * 4, true)
    : (v, i) => {
        bits[0] = v.getUint16(i * 2, true) << 16;
        return f[0]!;
      };
}

/** dst[i] = local[i] − global[i] in f32, both sources little-endian F32 or BF16 bytes. */
export function deltaToF32Ref(dst: Float32Array, local: Uint8Array, localDtype: 'F32' | 'BF16', global: Uint8Array, globalDtype: 'F32' | 'BF16'): void {
  const l = new DataView(local.buffer, local.byteOffset, local.byteLength);
  const g = new DataView(global.buffer, global.byteOffset, global.byteLength);
  const lw = widened(localDtype);
  const gw = widened(globalDtype);
  for (let i = 0; i < dst.length; i++) dst[i] = lw(l, i) - gw(g, i);
}

/**
 * dst[i] = bf16(local[i] − global[i]) for i < dst.length: the f32 difference of
 * {@link deltaToF32Ref}, rounded to nearest even with a NaN kept a NaN (quiet bit forced), as
 * f32ToBf16 (safetensors/dtype.ts) rounds.
 */
export function deltaToBf16Ref(dst: Uint16Array, local: Uint8Array, localDtype: 'F32' | 'BF16', global: Uint8Array, globalDtype: 'F32' | 'BF16'): void {
  const d = new Float32Array(dst.length);
  deltaToF32Ref(d, local, localDtype, global, globalDtype);
  const bits = new Uint32Array(d.buffer);
  for (let i = 0; i < dst.length; i++) {
    const x = bits[i]!;
    dst[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
}
