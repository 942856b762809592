/**
 * Decode-and-accumulate off the event loop: a pool of worker threads running the WebAssembly
 * SIMD kernels of `aggregation/kernels` over one shared WebAssembly.Memory.
 *
 * A job adds N sources (spool files or regions of the memory) into a target region of the
 * memory; the pool splits its elements across the workers. File sources are read by each worker
 * with pread straight into its own scratch region of the shared memory, so no byte of a spool is
 * copied on the way to the kernel, and the main thread only waits. Workers take chunks of a job
 * from a shared counter, so a worker the OS deschedules delays nobody. Jobs run one at a time, in the
 * order submitted. Memory: the regions callers allocate plus one scratch region per worker
 * (4 × {@link KernelPoolOptions.subElements} × 4 bytes: 2 MiB by default). Runs of four sources
 * in the same f32 or bf16 encoding go through one four-source kernel call, which loads and
 * stores the accumulator once for all four (same roundings as four passes).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import {
  WASM_PAGE_BYTES,
  type WireEncoding,
  compileKernelModule,
  createKernelMemory,
  invariant,
  wasmKernelsSupported,
} from '../../aggregation/index.js';
import { CoordinatorError } from '../core/errors.js';

/** What a source holds: a plain wire encoding (weighted, into f32) or masked words (mod 2^b). */
export type PoolEncoding = WireEncoding | 'u32' | 'u16';

/** One input of a job: a tensor's encoding in a file or in the pool memory. */
export interface PoolSource {
  readonly encoding: PoolEncoding;
  /** Weight of a plain source (f32 arithmetic); ignored for masked words. */
  readonly weight: number;
  /** Index, within its tensor (or word vector), of the value added into target element 0. */
  readonly elemInTensor: number;
  /** Where the tensor's encoding starts: a byte offset in `fd`, or a byte address in the pool memory. */
  readonly base: number;
  /** An open file descriptor to read from; absent: `base` is a memory address. */
  readonly fd?: number;
}

/** target[i] (+)= Σ_sources decode(source, elemInTensor + i) for i < count, sources in order. */
export interface PoolJob {
  /** Byte address of target element 0: f32 for plain sources, u32/u16 words for masked ones. */
  readonly target: number;
  readonly count: number;
  /** Zero the target first (in the workers, chunk by chunk, while it is in cache). */
  readonly clear: boolean;
  readonly sources: readonly PoolSource[];
  /** Use at most this many workers (default: all). */
  readonly maxThreads?: number;
}

/** How many workers {@link KernelPool.start} starts and how much each handles per pass. */
export interface KernelPoolOptions {
  /** Worker threads; default: the machine's available parallelism. */
  readonly threads?: number;
  /** Elements a worker handles per pass over the sources (default 131072: 512 KiB of f32). */
  readonly subElements?: number;
}

/** A region of the pool's memory, owned by its caller until {@link release}. */
export interface PoolRegion {
  /** Byte address in the memory (64-byte aligned). */
  readonly ptr: number;
  readonly bytes: number;
  release(): void;
}

/** Fewest elements worth handing to one more worker (message and wake-up cost ~50 µs). */
const MIN_ELEMENTS_PER_WORKER = 65536;
const ALIGN = 64;

interface Running {
  readonly id: number;
  pending: number;
  error: Error | undefined;
  aborted: boolean;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/** A pool of kernel workers over one shared memory. Create with {@link KernelPool.start}. */
export class KernelPool {
  private readonly free: { ptr: number; bytes: number }[] = [];
  private queue: Promise<void> = Promise.resolve();
  private nextId = 1;
  private running: Running | undefined;
  private failure: Error | undefined;
  private closed = false;

  private constructor(
    /** The shared memory every worker's instance uses. */
    readonly memory: WebAssembly.Memory,
    private readonly workers: readonly Worker[],
    /** control[0]: id of the job the workers must abandon; control[1]: the running job's next chunk. */
    private readonly control: Int32Array,
  ) {
    for (const w of workers) {
      w.on('message', (m: { id: number; ok: boolean; aborted?: boolean; error?: { name: string; message: string; code?: string } }) => this.onDone(m));
      w.on('error', (err) => this.fail(new CoordinatorError('INTERNAL', `kernel worker crashed: ${err.message}`, {}, { cause: err })));
      w.unref();
    }
  }

  /**
   * Starts the workers (each compiles nothing: the module is compiled once and shared). Refuses
   * with `INTERNAL` where WebAssembly SIMD or shared memory is unavailable; callers then use the
   * in-thread {@link createKernels} fallback.
   */
  static async start(options: KernelPoolOptions = {}): Promise<KernelPool> {
    const threads = options.threads ?? availableParallelism();
    const subElements = options.subElements ?? 131072;
    if (!Number.isSafeInteger(threads) || threads < 1) throw new CoordinatorError('BAD_REQUEST', `kernel pool threads must be a positive integer, got ${threads}`);
    if (!Number.isSafeInteger(subElements) || subElements < 1024) throw new CoordinatorError('BAD_REQUEST', `kernel pool subElements must be an integer ≥ 1024, got ${subElements}`);
    if (!wasmKernelsSupported()) throw new CoordinatorError('INTERNAL', 'WebAssembly SIMD with shared memory is unavailable in this runtime');
    // Four slots (one per source of a four-source kernel call), each a pass of f32 plus int8 slack.
    const scratchBytes = 4 * align(subElements * 4 + 1024);
    const heapStart = scratchBytes * threads;
    const memory = createKernelMemory(Math.ceil(heapStart / WASM_PAGE_BYTES) + 1);
    const module = compileKernelModule();
    const control = new Int32Array(new SharedArrayBuffer(8));
    const workers = await Promise.all(
      Array.from({ length: threads }, (_, i) =>
        startWorker({ module, memory, control: control.buffer, scratch: i * scratchBytes, scratchBytes, subElements }),
      ),
    );
    const pool = new KernelPool(memory, workers, control);
    pool.free.push({ ptr: heapStart, bytes: memory.buffer.byteLength - heapStart });
    return pool;
  }

  /** Worker threads in the pool. */
  get threads(): number {
    return this.workers.length;
  }

  /** Reserves `bytes` of the memory (64-byte aligned), growing it as needed up to 4 GiB. */
  allocate(bytes: number): PoolRegion {
    this.checkOpen();
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new CoordinatorError('BAD_REQUEST', `cannot allocate ${bytes} bytes`);
    const size = align(Math.max(bytes, 1));
    let slot = this.free.findIndex((f) => f.bytes >= size);
    if (slot < 0) slot = this.grow(size);
    const f = this.free[slot];
    invariant(f !== undefined, 'a block found or grown is in the free list');
    const ptr = f.ptr;
    if (f.bytes === size) this.free.splice(slot, 1);
    else this.free[slot] = { ptr: f.ptr + size, bytes: f.bytes - size };
    let released = false;
    return {
      ptr,
      bytes,
      release: () => {
        if (released) return;
        released = true;
        this.release(ptr, size);
      },
    };
  }

  /** A Float32Array view of `count` values at `ptr` (re-take views after any allocate: the memory may grow). */
  f32(ptr: number, count: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, count);
  }

  /** A byte view of the memory. */
  u8(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, length);
  }

  /**
   * Runs one job across the workers. Resolves when every worker has finished its share; rejects
   * with the signal's reason once every worker has stopped (so the target is no longer written),
   * with RangeError when a file source ends early, and with `INTERNAL` when a worker fails.
   */
  run(job: PoolJob, signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(() => this.execute(job, signal));
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /** Stops the workers. Pending jobs reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fail(new CoordinatorError('INTERNAL', 'kernel pool closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private async execute(job: PoolJob, signal: AbortSignal | undefined): Promise<void> {
    this.checkOpen();
    signal?.throwIfAborted();
    const targetSize = checkJob(job, this.memory.buffer.byteLength);
    if (job.count === 0) return;
    const parts = Math.min(this.workers.length, job.maxThreads ?? Infinity, Math.ceil(job.count / MIN_ELEMENTS_PER_WORKER));
    const id = this.nextId++;
    Atomics.store(this.control, 1, 0); // workers take chunks of subElements from this counter
    const done = new Promise<void>((resolve, reject) => {
      this.running = { id, pending: 0, error: undefined, aborted: false, resolve, reject };
    });
    invariant(this.running !== undefined, 'the promise executor set the running job before returning');
    const running = this.running;
    for (let p = 0; p < parts; p++) {
      const worker = this.workers[p];
      invariant(worker !== undefined, 'a job has at most as many parts as the pool has workers');
      running.pending++;
      worker.ref(); // an awaited job must keep the process alive
      worker.postMessage({ id, target: job.target, targetSize, count: job.count, clear: job.clear, sources: job.sources });
    }
    const onAbort = (): void => {
      running.aborted = true;
      Atomics.store(this.control, 0, id); // workers stop at their next chunk
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await done;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.running = undefined;
      for (const w of this.workers) w.unref();
    }
    if (running.aborted) signal?.throwIfAborted();
  }

  private onDone(m: { id: number; ok: boolean; aborted?: boolean; error?: { name: string; message: string; code?: string } }): void {
    const r = this.running;
    if (r === undefined || m.id !== r.id) return;
    if (m.error && !r.error) {
      r.error =
        m.error.name === 'RangeError'
          ? new RangeError(m.error.message)
          : new CoordinatorError('INTERNAL', `kernel worker failed: ${m.error.message}`, { code: m.error.code ?? '' });
    }
    if (--r.pending > 0) return;
    if (r.error) r.reject(r.error);
    else r.resolve(); // an aborted job resolves here and throws the signal's reason in execute()
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.running?.reject(err);
  }

  private checkOpen(): void {
    if (this.failure) throw this.failure;
  }

  /** Grows the memory so a free block of `size` bytes exists at its end; returns its index. */
  private grow(size: number): number {
    const end = this.memory.buffer.byteLength;
    const last = this.free.at(-1);
    const tail = last && last.ptr + last.bytes === end ? last.bytes : 0;
    const pages = Math.ceil((size - tail) / WASM_PAGE_BYTES);
    try {
      this.memory.grow(pages);
    } catch (cause) {
      throw new CoordinatorError('INTERNAL', `kernel pool memory cannot grow by ${pages} pages beyond ${end} bytes`, {}, { cause });
    }
    if (last !== undefined && tail > 0) last.bytes += pages * WASM_PAGE_BYTES;
    else this.free.push({ ptr: end, bytes: pages * WASM_PAGE_BYTES });
    return this.free.length - 1;
  }

  private release(ptr: number, size: number): void {
    // Sorted free list with coalescing of neighbours.
    let i = this.free.findIndex((f) => f.ptr > ptr);
    if (i < 0) i = this.free.length;
    const block = { ptr, bytes: size };
    this.free.splice(i, 0, block);
    const next = this.free[i + 1];
    if (next && ptr + size === next.ptr) {
      block.bytes += next.bytes;
      this.free.splice(i + 1, 1);
    }
    const prev = this.free[i - 1];
    if (prev && prev.ptr + prev.bytes === ptr) {
      prev.bytes += block.bytes;
      this.free.splice(i, 1);
    }
  }
}

function align(n: number): number {
  return Math.ceil(n / ALIGN) * ALIGN;
}

/** Validates a job; returns the target element size (4 for f32 and u32, 2 for u16). */
function checkJob(job: PoolJob, memoryBytes: number): number {
  const kinds = new Set(job.sources.map((s) => (s.encoding === 'u32' || s.encoding === 'u16' ? s.encoding : 'f32')));
  if (job.maxThreads !== undefined && !(Number.isSafeInteger(job.maxThreads) && job.maxThreads >= 1)) {
    throw new CoordinatorError('BAD_REQUEST', `kernel job maxThreads must be a positive integer, got ${job.maxThreads}`);
  }
  if (kinds.size > 1) throw new CoordinatorError('BAD_REQUEST', 'a kernel job mixes plain sources with masked words, or 32- with 16-bit words');
  const size = kinds.has('u16') ? 2 : 4;
  if (!Number.isSafeInteger(job.count) || job.count < 0 || !Number.isSafeInteger(job.target) || job.target < 0 || job.target + job.count * size > memoryBytes) {
    throw new CoordinatorError('BAD_REQUEST', `kernel job target [${job.target}, +${job.count}×${size}) is outside the pool memory`);
  }
  for (const s of job.sources) {
    if (!['f32', 'bf16', 'int8', 'u32', 'u16'].includes(s.encoding)) throw new CoordinatorError('BAD_REQUEST', `unknown kernel source encoding ${JSON.stringify(s.encoding)}`);
    if (!Number.isSafeInteger(s.elemInTensor) || s.elemInTensor < 0 || !Number.isSafeInteger(s.base) || s.base < 0) {
      throw new CoordinatorError('BAD_REQUEST', 'kernel source offsets must be non-negative integers');
    }
    if (!Number.isFinite(s.weight)) throw new CoordinatorError('BAD_REQUEST', `kernel source weight ${s.weight} is not finite`);
  }
  return size;
}

function startWorker(data: Record<string, unknown>): Promise<Worker> {
  const worker = new Worker(new URL('./kernel-worker.mjs', import.meta.url), { workerData: data });
  return new Promise((resolve, reject) => {
    worker.once('message', () => resolve(worker));
    worker.once('error', reject);
  });
}
