/**
 * Sums of verified spools, slice by slice: the weighted sum of plain deltas (f32, bf16 or int8
 * wire bytes, decoded as they are added) and the modular sum of masked words. With a
 * {@link KernelPool} the work runs in its worker threads, which read the spool files themselves
 * into shared memory; without one it runs in this thread through {@link Kernels} (WebAssembly
 * SIMD, or the JS reference). Both give the same bits. Memory: one slice per spool at most.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { type Kernels, SpoolLayout, WIRE_ENCODINGS, type WireEncoding, createKernels, invariant } from '../../aggregation/index.js';
import type { FileSource } from '../../common/files.js';
import { CoordinatorError } from '../core/errors.js';
import type { KernelPool, PoolSource } from './kernel-pool.js';

/** One spool to add: the raw wire bytes of every tensor in the global model's order. */
export interface WeightedSpool {
  readonly path: string;
  readonly encoding: WireEncoding;
  /** Multiplies the decoded values (f32 arithmetic): the normalised weight for a mean. */
  readonly weight: number;
  /**
   * Where the values start in the file, in bytes (default 0): an aggregator shard reads its slice
   * of a whole delta's spool in place (issue 22).
   */
  readonly offset?: number;
}

/**
 * Slices of a sum over the flattened model (or word vector), each a fresh array, or `into` (`count`
 * long) where the source takes one: the weighted f32 sums do, the masked word sums do not.
 */
export interface SpoolSlices<T> {
  read(elemOffset: number, count: number, into?: T): Promise<T>;
  close(): Promise<void>;
}

/** The array a mean slice of `count` values goes to: the caller's `into` (which must be that long), else a fresh one. */
export function meanSliceArray(count: number, into: Float32Array | undefined): Float32Array {
  invariant(into === undefined || into.length === count, 'a mean slice is read into an array of its length');
  return into ?? new Float32Array(count);
}

/** Where the sums run and how spools are opened without a pool. */
export interface SpoolSumOptions {
  /**
   * Worker pool; absent: this thread, through `kernels`. With a pool the spools are opened by
   * path (node:fs) so each worker can pread them into shared memory; `openSpool` is not used.
   */
  readonly pool?: KernelPool;
  /** In-thread kernels when there is no pool (default: {@link createKernels}). */
  readonly kernels?: Kernels;
  readonly openSpool: (path: string) => Promise<FileSource>;
  readonly signal?: AbortSignal;
}

/**
 * Σₖ wₖ·decode(spoolₖ) over element slices; `tensorElements` is the global model's value count
 * per tensor (int8 blocks restart at every tensor). Sources are added in order, element by
 * element, starting from +0.
 */
export async function openWeightedSpools(
  spools: readonly WeightedSpool[],
  tensorElements: readonly number[],
  o: SpoolSumOptions,
): Promise<SpoolSlices<Float32Array>> {
  for (const s of spools) {
    if (!WIRE_ENCODINGS.includes(s.encoding)) throw new CoordinatorError('BAD_REQUEST', `spool ${s.path} has unknown encoding ${JSON.stringify(s.encoding)}`);
  }
  const layouts = new Map(WIRE_ENCODINGS.map((e) => [e, new SpoolLayout(e, tensorElements)]));
  const layout = (e: WireEncoding): SpoolLayout => {
    const l = layouts.get(e);
    invariant(l !== undefined, 'every wire encoding has a layout');
    return l;
  };
  if (o.pool) {
    const pool = o.pool;
    const files = await openAll(spools.map((s) => s.path));
    return {
      async read(elemOffset, count, into) {
        const out = meanSliceArray(count, into);
        const target = pool.allocate(count * 4);
        try {
          for (const seg of layout('f32').segments(elemOffset, count)) {
            const sources: PoolSource[] = spools.map((s, k) => {
              const file = files[k];
              invariant(file !== undefined, 'each spool has an open file');
              return { encoding: s.encoding, weight: s.weight, elemInTensor: seg.elemInTensor, base: (s.offset ?? 0) + layout(s.encoding).tensorByteOffset(seg.tensor), fd: file.fd };
            });
            await pool.run({ target: target.ptr + seg.outOffset * 4, count: seg.count, clear: true, sources }, o.signal);
          }
          out.set(pool.f32(target.ptr, count));
        } finally {
          target.release();
        }
        return out;
      },
      close: () => closeAll(files),
    };
  }
  const kernels = o.kernels ?? createKernels();
  const sources = await openSources(spools.map((s) => s.path), o.openSpool);
  return {
    async read(elemOffset, count, into) {
      // The sum starts from +0, as a fresh array does.
      const out = meanSliceArray(count, into?.fill(0));
      for (const [k, s] of spools.entries()) {
        const source = sources[k];
        invariant(source !== undefined, 'each spool has an open source');
        for (const seg of layout(s.encoding).segments(elemOffset, count)) {
          o.signal?.throwIfAborted();
          const bytes = await source.read((s.offset ?? 0) + seg.byteOffset, seg.byteLength);
          kernels.accEncoded(out.subarray(seg.outOffset, seg.outOffset + seg.count), bytes, s.encoding, s.weight, seg.skip);
        }
      }
      return out;
    },
    close: () => closeAll(sources),
  };
}

/** Σₖ spoolₖ mod 2^bits over word slices; each spool is little-endian words of `bits` bits. */
export async function openMaskedSpools(paths: readonly string[], bits: 16 | 32, o: SpoolSumOptions): Promise<SpoolSlices<Uint32Array | Uint16Array>> {
  const size = bits / 8;
  const make = (n: number): Uint32Array | Uint16Array => (bits === 32 ? new Uint32Array(n) : new Uint16Array(n));
  if (o.pool) {
    const pool = o.pool;
    const files = await openAll(paths);
    return {
      async read(wordOffset, count) {
        const target = pool.allocate(count * size);
        try {
          const sources: PoolSource[] = files.map((f) => ({ encoding: bits === 32 ? 'u32' : 'u16', weight: 1, elemInTensor: wordOffset, base: 0, fd: f.fd }));
          await pool.run({ target: target.ptr, count, clear: true, sources }, o.signal);
          const out = make(count);
          new Uint8Array(out.buffer).set(pool.u8(target.ptr, count * size));
          return out;
        } finally {
          target.release();
        }
      },
      close: () => closeAll(files),
    };
  }
  const kernels = o.kernels ?? createKernels();
  const sources = await openSources(paths, o.openSpool);
  return {
    async read(wordOffset, count) {
      const sum = make(count);
      for (const spool of sources) {
        o.signal?.throwIfAborted();
        const bytes = await spool.read(wordOffset * size, count * size);
        const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice(); // a word view needs alignment
        if (sum instanceof Uint32Array) kernels.addModU32(sum, new Uint32Array(aligned.buffer, aligned.byteOffset, count));
        else kernels.addModU16(sum, new Uint16Array(aligned.buffer, aligned.byteOffset, count));
      }
      return sum;
    },
    close: () => closeAll(sources),
  };
}

async function openAll(paths: readonly string[]): Promise<FileHandle[]> {
  const handles: FileHandle[] = [];
  try {
    for (const p of paths) handles.push(await open(p, 'r'));
    return handles;
  } catch (err) {
    await closeAll(handles);
    throw err;
  }
}

async function openSources(paths: readonly string[], openSpool: (path: string) => Promise<FileSource>): Promise<FileSource[]> {
  const sources: FileSource[] = [];
  try {
    for (const p of paths) sources.push(await openSpool(p));
    return sources;
  } catch (err) {
    await closeAll(sources);
    throw err;
  }
}

async function closeAll(items: readonly { close(): Promise<void> }[]): Promise<void> {
  await Promise.allSettled(items.map((i) => i.close()));
}
