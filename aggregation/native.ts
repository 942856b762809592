/**
 * fedhpc's native module (native/*.c, Node-API): the kernels that touch every byte of a round
 * where JavaScript and WebAssembly cannot do them at the machine's speed (docs/decisions.md, "The
 * mask keystream is written by a small native module"):
 *
 * - the AES-256-CTR keystream of the mask generator written into the caller's memory: the same
 *   bytes as node:crypto's aes-256-ctr, at 1.3× `openssl speed` with VAES (0.8× with AES-NI alone)
 *   where Node's `cipher.update` reaches about half, because it allocates and zero-fills a new
 *   output buffer on every call;
 * - CRC32C with SSE4.2 (about four times @node-rs/crc32 per CPU-second here);
 * - the finiteness of bf16 and f32 values read in place (the WebAssembly kernel copies them into
 *   its memory first);
 * - SHA-256 with the SHA extensions, and two states over the same bytes at once (sha256.ts);
 * - secure aggregation's quantiser in AVX-512, reading the values in place (mask-workspace.ts).
 *
 * `npm run build` compiles it to dist/native/fedhpc_native.node where a C compiler is found
 * (scripts/build-native.mjs). Where it is missing, cannot load, or FEDHPC_NATIVE=off, {@link native}
 * is undefined; a function the CPU cannot run (no AES-NI, no SSE4.2) is absent. Callers then use
 * node:crypto, @node-rs/crc32 or the WebAssembly kernels: the same results, more CPU.
 *
 * The one file of aggregation/ that touches the filesystem, to find and load the module (never
 * data); test/unit/aggregation/purity.test.ts allows it that by name.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The module's exports (native/module.c). */
export interface NativeKernels {
  /** Whether this CPU has AES-NI (and {@link aes256CtrInto} is there). */
  readonly aesni: boolean;
  /** Whether sixteen AES blocks are made at once in VAES's 256-bit registers. */
  readonly vaes: boolean;
  /**
   * Keystream bytes from byte `skip` of counter block hi·2^32 + lo (IV 0 ‖ block, big-endian),
   * filling `out`; `narrow` keeps to the 128-bit AES-NI loop (for tests).
   */
  readonly aes256CtrInto?: (key: Uint8Array, blockHi: number, blockLo: number, skip: number, out: Uint8Array, narrow?: boolean) => void;
  /** CRC32C (Castagnoli) of `data`, as @node-rs/crc32's `crc32c(data)`. */
  readonly crc32c?: (data: Uint8Array) => number;
  /** Index of the first NaN or ±Infinity among little-endian bf16 values, or -1. */
  readonly findNonFiniteBf16?: (bytes: Uint8Array) => number;
  /** Index of the first NaN or ±Infinity among little-endian f32 values, or -1. */
  readonly findNonFiniteF32?: (bytes: Uint8Array) => number;
  /**
   * secure aggregation's quantiser (quantize.ts, `quantizeRange`), bit for bit, eight values a step
   * (AVX-512): x's f32 values and u's rounding words into u32 (`wide`) or u16 words; 1 when x holds
   * a NaN or ±Infinity, else 0.
   */
  readonly quantizeF32?: (dst: Uint8Array, x: Uint8Array, u: Uint8Array, clip: number, zero: number, scale: number, weight: number, wide: boolean) => number;
  /** Bytes of a SHA-256 state (the SHA extensions' functions below are there with it). */
  readonly sha256StateBytes?: number;
  readonly sha256Init?: (state: Uint8Array) => void;
  readonly sha256Update?: (state: Uint8Array, data: Uint8Array) => void;
  /** Both states take `data`, their rounds interleaved. */
  readonly sha256Update2?: (a: Uint8Array, b: Uint8Array, data: Uint8Array) => void;
  readonly sha256Final?: (state: Uint8Array, out: Uint8Array) => void;
}

/** Where the build puts the module: beside this file's dist/ tree, or under dist/ when run from source. */
const CANDIDATES = ['../native/fedhpc_native.node', '../dist/native/fedhpc_native.node'];

/** The module, or why it is not used. */
type Loaded = { readonly module: NativeKernels; readonly why?: undefined } | { readonly module?: undefined; readonly why: string };

function load(): Loaded {
  if ((process.env['FEDHPC_NATIVE'] ?? '').toLowerCase() === 'off') return { why: 'FEDHPC_NATIVE=off' };
  const path = CANDIDATES.map((c) => fileURLToPath(new URL(c, import.meta.url))).find((p) => existsSync(p));
  if (path === undefined) return { why: 'dist/native/fedhpc_native.node was not built (no C compiler when `npm run build` ran)' };
  try {
    return { module: createRequire(import.meta.url)(path) as NativeKernels };
  } catch (e) {
    return { why: `${path} did not load: ${(e as Error).message}` };
  }
}

const loaded = load();
/** The native kernels, or undefined (see {@link nativeUnavailable}). */
export const native: NativeKernels | undefined = loaded.module;
/** Why the native kernels are not used, or undefined when they are. */
export const nativeUnavailable: string | undefined = loaded.why;
/** Why the mask keystream does not come from the native module, or undefined when it does. */
export const nativeKeystreamUnavailable: string | undefined = loaded.why ?? (native?.aes256CtrInto === undefined ? 'this CPU has no AES-NI' : undefined);
