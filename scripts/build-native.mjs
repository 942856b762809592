// Compiles native/*.c — the mask generator's AES-256-CTR keystream written into caller memory, the
// CRC32C of chunks and the finiteness checks of delta values — into dist/native/fedhpc_native.node
// (loaded by aggregation/native.ts). It needs a C compiler and the Node-API headers (the
// node-api-headers dev dependency), nothing from the network. Without a compiler it says so and the
// build goes on: fedhpc then uses node:crypto, @node-rs/crc32 and its WebAssembly kernels, the same
// bytes at more CPU.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const SOURCES = ['native/module.c', 'native/prg.c', 'native/checks.c', 'native/sha256.c'];
const INPUTS = [...SOURCES, 'native/fedhpc_native.h'];
const OUT = 'dist/native/fedhpc_native.node';
const compiler = ['cc', 'gcc', 'clang'].find((c) => {
  try {
    execFileSync(c, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});
if (compiler === undefined) {
  console.error(`build-native: no C compiler (cc, gcc, clang) found: ${OUT} not built; fedhpc uses node:crypto, @node-rs/crc32 and WebAssembly instead`);
  process.exit(0);
}
if (existsSync(OUT) && INPUTS.every((f) => statSync(OUT).mtimeMs >= statSync(f).mtimeMs)) process.exit(0);
const headers = join(dirname(createRequire(import.meta.url).resolve('node-api-headers/package.json')), 'include');
mkdirSync(dirname(OUT), { recursive: true });
execFileSync(compiler, ['-O3', '-ffp-contract=off', '-fPIC', '-shared', '-Wall', '-Werror', '-DNAPI_VERSION=8', '-DNODE_GYP_MODULE_NAME=fedhpc_native', '-I', headers, ...SOURCES, '-o', OUT, '-lm'], { stdio: 'inherit' });
