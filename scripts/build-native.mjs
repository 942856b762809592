// Compiles native/prg.c, the mask generator's AES-256-CTR keystream written into caller memory
// (aggregation/secagg/native-prg.ts), into dist/native/fedhpc_prg.node. It needs a C compiler and
// the Node-API headers (the node-api-headers dev dependency), nothing from the network. Without a
// compiler it says so and the build goes on: masks then use node:crypto, the same bytes at more CPU.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const SOURCE = 'native/prg.c';
const OUT = 'dist/native/fedhpc_prg.node';
const compiler = ['cc', 'gcc', 'clang'].find((c) => {
  try {
    execFileSync(c, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});
if (compiler === undefined) {
  console.error(`build-native: no C compiler (cc, gcc, clang) found: ${OUT} not built; secure aggregation masks use node:crypto`);
  process.exit(0);
}
if (existsSync(OUT) && statSync(OUT).mtimeMs >= statSync(SOURCE).mtimeMs) process.exit(0);
const headers = join(dirname(createRequire(import.meta.url).resolve('node-api-headers/package.json')), 'include');
mkdirSync(dirname(OUT), { recursive: true });
execFileSync(compiler, ['-O3', '-fPIC', '-shared', '-Wall', '-Werror', '-DNAPI_VERSION=8', '-DNODE_GYP_MODULE_NAME=fedhpc_prg', '-I', headers, SOURCE, '-o', OUT], { stdio: 'inherit' });
