/**
 * Weighted sums of tensor slices: the server side of FedAvg-style aggregation, fed slice by slice
 * as uploads stream in.
 */
import { AggregationError } from './errors.js';
import { type Kernels, createKernels } from './kernels/wasm.js';
import { findNonFiniteBf16Ref, findNonFiniteRef } from './kernels/reference.js';
import { nativeKernels } from './native.js';
import { bf16ToF32 } from './safetensors/dtype.js';

/** One tensor of the model layout an accumulator sums over. */
export interface TensorLayoutEntry {
  readonly name: string;
  readonly shape: readonly number[];
}

/** Wire encodings {@link WeightedAccumulator.addEncoded} decodes (little-endian). */
export type AccumulatorEncoding = 'f32' | 'bf16';

/** Elements decoded per scratch pass in {@link WeightedAccumulator.addEncoded} (256 KiB of f32). */
const SCRATCH_ELEMENTS = 65536;

/** Below this many values the JS loop wins over copying into the kernel's memory. */
const FINITE_KERNEL_MIN = 4096;
/**
 * The kernels behind {@link checkFinite}, made on first use. A cache, not shared state: every
 * call is synchronous and leaves nothing behind, so callers cannot observe each other.
 */
let finiteKernels: Kernels | undefined;

/**
 * Index of the first NaN or ±Infinity in `values`, or -1 when all are finite. Large arrays go
 * through the native kernel where it is built (read in place), else the WebAssembly SIMD kernel
 * (about 4× the JS loop per CPU-second, copy included).
 */
export function checkFinite(values: Float32Array): number {
  if (values.length < FINITE_KERNEL_MIN) return findNonFiniteRef(values);
  const find = nativeKernels()?.findNonFiniteF32;
  if (find !== undefined) return find(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  finiteKernels ??= createKernels();
  return finiteKernels.findNonFinite(values);
}

/**
 * Index of the first bf16 NaN or ±Infinity among little-endian bf16 `bytes` (any byte offset), or
 * -1 when all are finite: {@link checkFinite} for bf16, large inputs through the native kernel, else
 * the SIMD kernel (about four times a 32-bit word loop per CPU-second, copy included).
 */
export function checkFiniteBf16(bytes: Uint8Array): number {
  if (bytes.length < 2 * FINITE_KERNEL_MIN) return findNonFiniteBf16Ref(bytes);
  const find = nativeKernels()?.findNonFiniteBf16;
  if (find !== undefined) return find(bytes);
  finiteKernels ??= createKernels();
  return finiteKernels.findNonFiniteBf16(bytes);
}

/**
 * Accumulates Σ wᵢ·xᵢ per tensor in f32, with Σ wᵢ tracked separately, and yields the weighted
 * mean of any slice. Storage is private and reached only through slice methods, so a chunked
 * implementation for models beyond one process's memory can replace it.
 */
export class WeightedAccumulator {
  private readonly sums = new Map<string, Float32Array>();
  private readonly scratch = new Float32Array(SCRATCH_ELEMENTS);
  private readonly scratchHalves = new Uint16Array(SCRATCH_ELEMENTS);
  private weight = 0;
  private contributions = 0;

  /** Allocates zeroed f32 storage for every tensor of `layout`; names must be unique. */
  constructor(layout: readonly TensorLayoutEntry[]) {
    for (const entry of layout) {
      if (this.sums.has(entry.name)) {
        throw new AggregationError('INVALID_ARGUMENT', `tensor ${JSON.stringify(entry.name)} repeated in layout`, { tensor: entry.name });
      }
      if (!entry.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw new AggregationError('INVALID_ARGUMENT', `tensor ${JSON.stringify(entry.name)} has an invalid shape`, { tensor: entry.name, shape: entry.shape });
      }
      this.sums.set(entry.name, new Float32Array(entry.shape.reduce((a, d) => a * d, 1)));
    }
  }

  /** Σ of the weights passed to {@link addWeight}. */
  get totalWeight(): number {
    return this.weight;
  }

  /** Number of {@link addWeight} calls (contributions counted). */
  get contributionCount(): number {
    return this.contributions;
  }

  /** Element count of tensor `name`. */
  elements(name: string): number {
    return this.storage(name).length;
  }

  /** Records one contribution's weight; call once per contribution. `weight` must be finite and > 0. */
  addWeight(weight: number): void {
    checkWeight(weight);
    this.weight += weight;
    this.contributions += 1;
  }

  /** Adds `weight · values` into elements `[elemOffset, elemOffset + values.length)` of tensor `name`. */
  add(name: string, elemOffset: number, values: Float32Array, weight: number): void {
    checkWeight(weight);
    const target = this.slice(name, elemOffset, values.length);
    for (let i = 0; i < values.length; i++) target[i]! += weight * values[i]!;
  }

  /**
   * Like {@link add} for little-endian encoded bytes (`f32`: 4 bytes per element, `bf16`: 2),
   * decoded in bounded scratch passes without allocating per call.
   */
  addEncoded(name: string, elemOffset: number, bytes: Uint8Array, encoding: AccumulatorEncoding, weight: number): void {
    checkWeight(weight);
    const size = encoding === 'f32' ? 4 : 2;
    if (bytes.length % size !== 0) {
      throw new AggregationError('TENSOR_MISMATCH', `${bytes.length} bytes is not a whole number of ${encoding} elements`, { tensor: name, encoding, byteLength: bytes.length });
    }
    const count = bytes.length / size;
    this.slice(name, elemOffset, count); // range check before any change
    const scratchBytes = new Uint8Array(this.scratch.buffer);
    for (let done = 0; done < count; done += SCRATCH_ELEMENTS) {
      const n = Math.min(SCRATCH_ELEMENTS, count - done);
      const piece = bytes.subarray(done * size, (done + n) * size);
      let values: Float32Array;
      if (encoding === 'f32') {
        scratchBytes.set(piece); // copying also fixes a misaligned view
        values = this.scratch.subarray(0, n);
      } else {
        // Copy into aligned scratch first: the caller's view may sit at an odd byte offset.
        new Uint8Array(this.scratchHalves.buffer, 0, n * 2).set(piece);
        values = bf16ToF32(this.scratchHalves.subarray(0, n), this.scratch.subarray(0, n));
      }
      this.add(name, elemOffset + done, values, weight);
    }
  }

  /** A copy of Σ wᵢ·xᵢ over elements `[elemOffset, elemOffset + count)`. */
  readSum(name: string, elemOffset: number, count: number): Float32Array {
    return this.slice(name, elemOffset, count).slice();
  }

  /** The weighted mean Σ wᵢ·xᵢ / Σ wᵢ of a slice; throws `NO_CONTRIBUTIONS` when no weight was added. */
  mean(name: string, elemOffset: number, count: number): Float32Array {
    if (!(this.weight > 0)) throw new AggregationError('NO_CONTRIBUTIONS', 'mean of an accumulator with zero total weight');
    const sum = this.slice(name, elemOffset, count);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = sum[i]! / this.weight;
    return out;
  }

  private storage(name: string): Float32Array {
    const sum = this.sums.get(name);
    if (sum === undefined) throw new AggregationError('TENSOR_UNKNOWN', `no tensor ${JSON.stringify(name)} in layout`, { tensor: name });
    return sum;
  }

  private slice(name: string, elemOffset: number, count: number): Float32Array {
    const sum = this.storage(name);
    if (!Number.isSafeInteger(elemOffset) || !Number.isSafeInteger(count) || elemOffset < 0 || count < 0 || elemOffset + count > sum.length) {
      throw new AggregationError('OUT_OF_RANGE', `slice [${elemOffset}, +${count}) outside tensor ${JSON.stringify(name)} of ${sum.length} elements`, {
        tensor: name,
        elemOffset,
        count,
        elements: sum.length,
      });
    }
    return sum.subarray(elemOffset, elemOffset + count);
  }
}

function checkWeight(weight: number): void {
  if (!Number.isFinite(weight)) throw new AggregationError('NON_FINITE', `weight ${weight} is not finite`, { weight });
  if (!(weight > 0)) throw new AggregationError('OUT_OF_RANGE', `weight ${weight} must be > 0`, { weight });
}
