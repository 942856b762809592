// One thread of the kernel pool (coordinator/aggregate/kernel-pool.ts). Plain JavaScript on purpose: a
// worker must start without a TypeScript loader, under vitest as from dist/.
//
// It instantiates kernels.wasm over the pool's shared memory and runs its share of each job: for
// every sub-chunk of its element range, each source is read straight into this thread's scratch
// region of the shared memory (pread from the spool file; no intermediate buffer) or taken in
// place from the memory, then decoded and added into the target with one kernel call. Sources
// are added in order, so every element sees the same sequence of f32 operations as a single
// pass per source would.
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

/** @type {{ module: WebAssembly.Module, memory: WebAssembly.Memory, control: SharedArrayBuffer, scratch: number, scratchBytes: number, subElements: number }} */
// scratch holds four slots of scratchBytes / 4: one per source of a four-source kernel call.
const init = workerData;
const k = /** @type {any} */ (new WebAssembly.Instance(init.module, { env: { memory: init.memory } }).exports);
const control = new Int32Array(init.control);

/**
 * One source of a job: a spool file (`fd`, its bytes from `base`) or bytes in the shared memory at `base`.
 * @typedef {{ encoding: 'f32' | 'bf16' | 'int8' | 'u32' | 'u16', fd?: number, base: number, elemInTensor: number, weight: number }} Source
 */
/**
 * One job of the pool: add `sources` into `count` elements of `targetSize` bytes at `target`.
 * @typedef {{ id: number, target: number, targetSize: number, count: number, clear: boolean, sources: Source[] }} Job
 */
/** The port to the pool; a worker is only ever started by the pool. */
const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort);

// Mirrors encodedRange() in aggregation/kernels/encoding.ts (int8: blocks of 128 values, each
// after a 4-byte f32 scale; ⌈e/128⌉·4 + e bytes hold the first e values of a tensor).
/**
 * @param {string} encoding
 * @param {number} elem
 * @param {number} count
 * @returns {{ offset: number, length: number, skip: number }}
 */
function range(encoding, elem, count) {
  switch (encoding) {
    case 'f32':
    case 'u32':
      return { offset: elem * 4, length: count * 4, skip: 0 };
    case 'bf16':
    case 'u16':
      return { offset: elem * 2, length: count * 2, skip: 0 };
    case 'int8': {
      const block = Math.floor(elem / 128);
      const offset = block * 132;
      const end = Math.ceil((elem + count) / 128) * 4 + elem + count;
      return { offset, length: end - offset, skip: elem - block * 128 };
    }
    default:
      throw new TypeError(`unknown encoding ${encoding}`);
  }
}

/**
 * @param {number} fd
 * @param {Uint8Array} bytes
 * @param {number} at
 * @param {number} length
 * @param {number} position
 */
function readFully(fd, bytes, at, length, position) {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, bytes, at + done, length - done, position + done);
    if (n === 0) throw new RangeError(`spool read [${position}, ${position + length}) runs past the end of the file at ${position + done}`);
    done += n;
  }
}

const slotBytes = Math.floor(init.scratchBytes / 4 / 64) * 64;

/**
 * Address of source `s`'s bytes for values [elem, elem + m): in place, or read into scratch slot `slot`.
 * @param {Uint8Array} bytes
 * @param {Source} s
 * @param {number} elem
 * @param {number} m
 * @param {number} slot
 * @returns {{ ptr: number, skip: number }}
 */
function locate(bytes, s, elem, m, slot) {
  const r = range(s.encoding, elem, m);
  if (s.fd === undefined) return { ptr: s.base + r.offset, skip: r.skip };
  const ptr = init.scratch + slot * slotBytes;
  readFully(s.fd, bytes, ptr, r.length, s.base + r.offset);
  return { ptr, skip: r.skip };
}

/**
 * Whether sources[i..i+3] can go through one four-source kernel call (same f32 or bf16 encoding).
 * @param {Source[]} sources
 * @param {number} i
 */
function quad(sources, i) {
  const e = at(sources, i).encoding;
  if ((e !== 'f32' && e !== 'bf16') || i + 4 > sources.length) return false;
  return at(sources, i + 1).encoding === e && at(sources, i + 2).encoding === e && at(sources, i + 3).encoding === e;
}

/**
 * `list[i]`, which the caller knows is there.
 * @template T
 * @param {readonly T[]} list
 * @param {number} i
 * @returns {T}
 */
function at(list, i) {
  return /** @type {T} */ (list[i]);
}

/**
 * Runs this thread's share of `job`; false when the pool aborted it meanwhile.
 * @param {Job} job
 */
function run(job) {
  const bytes = new Uint8Array(init.memory.buffer); // refreshed per job: the memory may have grown
  const size = job.targetSize;
  const sources = job.sources;
  // Chunks are taken from a shared counter, not a fixed share: on a busy machine a descheduled
  // worker holds up nobody, the others take the chunks it has not started.
  for (;;) {
    if (Atomics.load(control, 0) === job.id) return false;
    const a = Atomics.add(control, 1, 1) * init.subElements;
    if (a >= job.count) return true;
    const m = Math.min(init.subElements, job.count - a);
    const target = job.target + a * size;
    // The kernel's memory.fill, not bytes.fill: TypedArray fill on shared memory is ~40× slower.
    if (job.clear) k.zero(target, m * size);
    for (let i = 0; i < sources.length; ) {
      if (quad(sources, i)) {
        // One pass over the accumulator for four sources, in order: the same roundings.
        const p = [0, 1, 2, 3].map((j) => locate(bytes, at(sources, i + j), at(sources, i + j).elemInTensor + a, m, j).ptr);
        const w = [0, 1, 2, 3].map((j) => at(sources, i + j).weight);
        const kernel = at(sources, i).encoding === 'f32' ? k.acc_f32_x4 : k.acc_bf16_x4;
        kernel(target, p[0], p[1], p[2], p[3], m, w[0], w[1], w[2], w[3]);
        i += 4;
        continue;
      }
      const s = at(sources, i++);
      const { ptr: src, skip } = locate(bytes, s, s.elemInTensor + a, m, 0);
      switch (s.encoding) {
        case 'f32':
          k.acc_f32(target, src, m, s.weight);
          break;
        case 'bf16':
          k.acc_bf16(target, src, m, s.weight);
          break;
        case 'int8':
          k.acc_int8(target, src, skip, m, s.weight);
          break;
        case 'u32':
          k.add_mod_u32(target, src, m);
          break;
        case 'u16':
          k.add_mod_u16(target, src, m);
          break;
      }
    }
  }
}

port.on('message', (/** @type {Job} */ job) => {
  try {
    const completed = run(job);
    port.postMessage({ id: job.id, ok: completed, aborted: !completed });
  } catch (err) {
    const e = /** @type {Error & { code?: string }} */ (err);
    port.postMessage({ id: job.id, ok: false, error: { name: e.name, message: e.message, code: e.code } });
  }
});
port.postMessage({ ready: true });
