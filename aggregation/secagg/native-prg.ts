/**
 * The AES-256-CTR keystream of native/prg.c, written into the caller's memory: the same bytes as
 * node:crypto's aes-256-ctr, at 1.6× `openssl speed` with VAES (0.8× with AES-NI alone) where
 * Node's `cipher.update` reaches about half, because it allocates and zero-fills a new output buffer
 * on every call
 * (docs/decisions.md, "The mask keystream written by a small native module").
 *
 * `npm run build` compiles it to dist/native/fedhpc_prg.node where a C compiler is found
 * (scripts/build-native.mjs). Where it is missing, cannot load, or the CPU lacks AES-NI, or
 * FEDHPC_NATIVE_PRG=off, {@link nativePrg} is undefined and prg.ts uses node:crypto — the same
 * bytes, more CPU.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The module's exports (native/prg.c). */
interface NativePrgModule {
  readonly aesni: boolean;
  /** Whether sixteen blocks are made at once in VAES's 256-bit registers. */
  readonly vaes: boolean;
  /**
   * Keystream bytes from byte `skip` of counter block hi·2^32 + lo (IV 0 ‖ block, big-endian),
   * filling `out`; `narrow` keeps to the 128-bit AES-NI loop (for tests).
   */
  aes256CtrInto(key: Uint8Array, blockHi: number, blockLo: number, skip: number, out: Uint8Array, narrow?: boolean): void;
}

/** Where the build puts the module: beside this file's dist/ tree, or under dist/ when run from source. */
const CANDIDATES = ['../../native/fedhpc_prg.node', '../../dist/native/fedhpc_prg.node'];

/** The module, or why it is not used. */
type Loaded = { readonly module: NativePrgModule; readonly why?: undefined } | { readonly module?: undefined; readonly why: string };

function load(): Loaded {
  if ((process.env['FEDHPC_NATIVE_PRG'] ?? '').toLowerCase() === 'off') return { why: 'FEDHPC_NATIVE_PRG=off' };
  const path = CANDIDATES.map((c) => fileURLToPath(new URL(c, import.meta.url))).find((p) => existsSync(p));
  if (path === undefined) return { why: 'dist/native/fedhpc_prg.node was not built (no C compiler when `npm run build` ran)' };
  try {
    const module = createRequire(import.meta.url)(path) as NativePrgModule;
    return module.aesni ? { module } : { why: 'this CPU has no AES-NI' };
  } catch (e) {
    return { why: `${path} did not load: ${(e as Error).message}` };
  }
}

const loaded = load();
/** The native keystream, or undefined (see {@link nativePrgUnavailable}). */
export const nativePrg: NativePrgModule | undefined = loaded.module;
/** Why the native keystream is not used, or undefined when it is. */
export const nativePrgUnavailable: string | undefined = loaded.why;
