/**
 * Safetensors dtypes and bulk conversions between f32 and the 16-bit float formats.
 *
 * Conversions work on whole typed arrays through integer views of the same memory, with no
 * per-element allocation. The host is assumed little-endian (every platform Node 20 supports).
 * The bf16 conversions and the overflow check run in the native module where it is built
 * (native/step.c, the same bits), in the JS below elsewhere.
 */
import { AggregationError } from '../errors.js';
import { bytesOf, nativeKernels } from '../native.js';

/** The dtypes fedhpc accepts in a safetensors file, with their size in bytes. */
export const DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
} as const;

/** A safetensors dtype name accepted by this library. */
export type Dtype = keyof typeof DTYPE_SIZES;

/** The dtypes that {@link bf16ToF32}-style conversion can turn into f32 and back. */
export const FLOAT_DTYPES = ['F32', 'BF16', 'F16'] as const;

/** A dtype convertible to and from f32 by this library. */
export type FloatDtype = (typeof FLOAT_DTYPES)[number];

/** True when `value` names a supported dtype. */
export function isDtype(value: unknown): value is Dtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, value);
}

/** True when `dtype` converts to and from f32 (F32, BF16, F16). */
export function isFloatDtype(dtype: Dtype): dtype is FloatDtype {
  return dtype === 'F32' || dtype === 'BF16' || dtype === 'F16';
}

/** Size in bytes of one element of `dtype`. */
export function dtypeSize(dtype: Dtype): number {
  return DTYPE_SIZES[dtype];
}

function checkDst(srcLength: number, dstLength: number): void {
  if (dstLength !== srcLength) {
    throw new AggregationError('TENSOR_MISMATCH', `destination holds ${dstLength} elements, source ${srcLength}`, {
      srcLength,
      dstLength,
    });
  }
}

/** Widens bf16 bit patterns to f32 (exact). Writes into `dst` when given (same length). */
export function bf16ToF32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  checkDst(src.length, dst.length);
  const native = nativeKernels()?.bf16ToF32;
  if (native !== undefined) {
    native(bytesOf(dst), bytesOf(src));
    return dst;
  }
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return dst;
}

/**
 * Narrows f32 to bf16 bit patterns with round-to-nearest-even; overflow rounds to ±Inf and NaN
 * stays NaN (quiet). Writes into `dst` when given (same length).
 */
export function f32ToBf16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  checkDst(src.length, dst.length);
  const native = nativeKernels()?.f32ToBf16;
  if (native !== undefined) {
    native(bytesOf(dst), bytesOf(src));
    return dst;
  }
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) {
      // Truncating a NaN could clear every mantissa bit and turn it into Inf: force the quiet bit.
      dst[i] = (x >>> 16) | 0x40;
    } else {
      dst[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return dst;
}

let f16Table: Uint32Array | undefined;

/** The f32 bit pattern of each of the 65,536 f16 values, built once on first use (256 KiB). */
function f16ToF32Table(): Uint32Array {
  if (f16Table !== undefined) return f16Table;
  const table = new Uint32Array(65536);
  const asFloat = new Float32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      asFloat[h] = mant * 2 ** -24 * (sign === 0 ? 1 : -1);
    } else if (exp === 31) {
      table[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0;
    } else {
      table[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
    }
  }
  f16Table = table;
  return table;
}

/** Widens IEEE binary16 bit patterns to f32 (exact). Writes into `dst` when given (same length). */
export function f16ToF32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  checkDst(src.length, dst.length);
  const table = f16ToF32Table();
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return dst;
}

/**
 * Narrows f32 to IEEE binary16 bit patterns with round-to-nearest-even, including subnormals;
 * values of magnitude ≥ 65520 become ±Inf, NaN stays NaN. Writes into `dst` when given.
 */
export function f32ToF16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  checkDst(src.length, dst.length);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    const sign = (x >>> 16) & 0x8000;
    const abs = x & 0x7fffffff;
    if (abs > 0x7f800000) {
      dst[i] = sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
    } else if (abs >= 0x477ff000) {
      dst[i] = sign | 0x7c00; // ≥ 65520 rounds (ties-to-even) past 65504, the largest f16
    } else if (abs >= 0x38800000) {
      // Normal: rebias the exponent (127 → 15) and round the 13 dropped mantissa bits to even;
      // a carry out of the mantissa correctly bumps the exponent.
      dst[i] = sign | ((abs - 0x38000000 + 0xfff + ((abs >>> 13) & 1)) >>> 13);
    } else {
      // Subnormal or zero: the result is round-half-even(|x| / 2^-24), exact in f64.
      const t = Math.abs(src[i]!) * 2 ** 24;
      let r = Math.round(t);
      if (r - t === 0.5 && (r & 1) === 1) r -= 1;
      dst[i] = sign | r;
    }
  }
  return dst;
}

/**
 * The smallest magnitude, as f32 bits, that {@link f32ToBf16} and {@link f32ToF16} round to ±Inf:
 * halfway past the largest finite value, where round-to-nearest-even goes to the (even) infinity.
 */
const OVERFLOW_BITS = { BF16: 0x7f7f8000, F16: 0x477ff000 } as const;

/**
 * The index of the first finite value of `values` that narrowing to `dtype` turns into ±Inf (f16
 * above 65504 after rounding, bf16 only next to f32's own limit), or −1 when none does. Lets a
 * writer refuse to store an infinity the f32 values did not hold.
 */
export function narrowingOverflow(values: Float32Array, dtype: FloatDtype): number {
  if (dtype === 'F32') return -1;
  const limit = OVERFLOW_BITS[dtype];
  const native = nativeKernels()?.findNarrowingOverflow;
  if (native !== undefined) return native(bytesOf(values), limit);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) {
    const abs = bits[i]! & 0x7fffffff;
    if (abs >= limit && abs < 0x7f800000) return i;
  }
  return -1;
}

/**
 * Returns `bytes` as a view whose byte offset is a multiple of `alignment`, copying into a fresh
 * buffer only when the given view is misaligned (typed-array views require alignment).
 */
export function aligned(bytes: Uint8Array, alignment: number): Uint8Array {
  if (bytes.byteOffset % alignment === 0) return bytes;
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy;
}

/**
 * Decodes little-endian `bytes` of a float dtype into `into` (as many values) or a fresh
 * Float32Array: never a view of `bytes`, so the caller may mutate the result freely.
 */
export function decodeToF32(bytes: Uint8Array, dtype: FloatDtype, into?: Float32Array): Float32Array {
  const size = DTYPE_SIZES[dtype];
  if (bytes.length % size !== 0) {
    throw new AggregationError('TENSOR_MISMATCH', `${bytes.length} bytes is not a whole number of ${dtype}`, {
      byteLength: bytes.length,
      dtype,
    });
  }
  const count = bytes.length / size;
  const out = into ?? new Float32Array(count);
  checkDst(count, out.length);
  if (dtype === 'F32') {
    bytesOf(out).set(bytes);
    return out;
  }
  const src = aligned(bytes, 2);
  const halves = new Uint16Array(src.buffer, src.byteOffset, count);
  return dtype === 'BF16' ? bf16ToF32(halves, out) : f16ToF32(halves, out);
}

/**
 * Encodes f32 values as little-endian bytes of a float dtype. For F32 the result is a view of
 * `values`' memory; for BF16/F16 it is a view of `scratch` when given (at least as many values;
 * valid until the caller reuses it), else a fresh buffer.
 */
export function encodeFromF32(values: Float32Array, dtype: FloatDtype, scratch?: Uint16Array): Uint8Array {
  if (dtype === 'F32') return bytesOf(values);
  if (scratch !== undefined && scratch.length < values.length) {
    throw new AggregationError('TENSOR_MISMATCH', `a scratch of ${scratch.length} values cannot hold ${values.length}`, { scratch: scratch.length, values: values.length });
  }
  const dst = scratch?.subarray(0, values.length);
  const halves = dtype === 'BF16' ? f32ToBf16(values, dst) : f32ToF16(values, dst);
  return bytesOf(halves);
}
