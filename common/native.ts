/**
 * Finds and loads fedhpc's native module (native/*.c, built by `npm run build` into
 * dist/native/fedhpc_native.node where a C compiler is found; scripts/build-native.mjs). What it
 * holds and who uses it is aggregation/native.ts, which stays free of the filesystem: each process's
 * entry point hands it what this returns (`useNativeKernels(loadNativeModule())`).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The loaded module, or why there is none. */
export interface LoadedNativeModule {
  readonly module?: object;
  readonly why?: string;
}

/** Where the build puts the module: beside this file's dist/ tree, or under dist/ when run from source. */
const CANDIDATES = ['../native/fedhpc_native.node', '../dist/native/fedhpc_native.node'];

/** Loads the module, unless FEDHPC_NATIVE=off; never throws. */
export function loadNativeModule(): LoadedNativeModule {
  if ((process.env['FEDHPC_NATIVE'] ?? '').toLowerCase() === 'off') return { why: 'FEDHPC_NATIVE=off' };
  const path = CANDIDATES.map((c) => fileURLToPath(new URL(c, import.meta.url))).find((p) => existsSync(p));
  if (path === undefined) return { why: 'dist/native/fedhpc_native.node was not built (no C compiler when `npm run build` ran)' };
  try {
    return { module: createRequire(import.meta.url)(path) as object };
  } catch (e) {
    return { why: `${path} did not load: ${(e as Error).message}` };
  }
}
