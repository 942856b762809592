// Compiles native/*.c — the mask generator's AES-256-CTR keystream written into caller memory, the
// CRC32C of chunks, the finiteness checks of delta values, SHA-256 with two states at once and the
// masked encoding's quantiser — into dist/native/fedhpc_native.node (loaded by aggregation/native.ts).
// It needs a C compiler and the Node-API headers (the node-api-headers dev dependency), nothing from
// the network. Without a compiler, or when the compile fails, it says so and the build goes on:
// fedhpc then uses node:crypto, @node-rs/crc32 and its WebAssembly kernels, the same results at more
// CPU. Where FEDHPC_REQUIRE names `native` (as .ci/run sets it), either is an error instead, and
// warnings fail the compile.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCES = ['native/module.c', 'native/prg.c', 'native/checks.c', 'native/mask.c', 'native/sha256.c', 'native/step.c'];
const INPUTS = [...SOURCES, 'native/fedhpc_native.h', 'native/bf16.h', fileURLToPath(import.meta.url)];
const OUT = 'dist/native/fedhpc_native.node';
const required = (process.env['FEDHPC_REQUIRE'] ?? '').split(',').map((s) => s.trim()).includes('native');

/**
 * Says why the module is not built; an error where it is required.
 * @param {string} why
 * @returns {never}
 */
function without(why) {
  const message = `build-native: ${why}: ${OUT} not built; fedhpc uses node:crypto, @node-rs/crc32 and WebAssembly instead`;
  if (required) {
    console.error(`${message} — but FEDHPC_REQUIRE names native`);
    process.exit(1);
  }
  console.error(message);
  process.exit(0);
}

const compiler = ['cc', 'gcc', 'clang'].find((c) => {
  try {
    execFileSync(c, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});
if (compiler === undefined) without('no C compiler (cc, gcc, clang) found');
if (existsSync(OUT) && INPUTS.every((f) => statSync(OUT).mtimeMs >= statSync(f).mtimeMs)) process.exit(0);
const headers = join(dirname(createRequire(import.meta.url).resolve('node-api-headers/package.json')), 'include');
mkdirSync(dirname(OUT), { recursive: true });
// -ffp-contract=off: the quantiser must round as the JS formula does, with no multiply-add fused.
const flags = ['-O3', '-ffp-contract=off', '-fPIC', '-shared', '-Wall', ...(required ? ['-Werror'] : []), '-DNAPI_VERSION=8', '-DNODE_GYP_MODULE_NAME=fedhpc_native'];
// macOS links an addon's napi_* symbols when node loads it.
if (process.platform === 'darwin') flags.push('-undefined', 'dynamic_lookup');
try {
  execFileSync(compiler, [...flags, '-I', headers, ...SOURCES, '-o', OUT, '-lm'], { stdio: 'inherit' });
} catch (e) {
  rmSync(OUT, { force: true });
  without(`${compiler} failed (${String(/** @type {Error} */ (e).message).split('\n')[0]})`);
}
