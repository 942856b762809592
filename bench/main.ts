/**
 * `npm run bench -- NAME [--json]`: runs one benchmark. Each prints human-readable lines and, with
 * `--json`, a last line holding its figures. Every benchmark measures its baseline in the same run.
 *
 * Some benchmarks receive in this process as the coordinator does (transport's and wan's gRPC
 * receivers): it runs with the V8 settings every fedhpc process has (common/gc-tuning.ts), starting
 * itself again with Node's options where it was started without them.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { useNativeKernels } from '../aggregation/index.js';
import { NODE_HEAP_OPTIONS, startedWithHeapOptions, tuneGarbageCollector } from '../common/gc-tuning.js';
import { loadNativeModule } from '../common/native.js';
import { BENCHMARKS } from './registry.js';

/** This benchmark run again in a Node started with {@link NODE_HEAP_OPTIONS}; its exit status. */
function rerunWithHeapOptions(argv: string[]): number {
  const script = fileURLToPath(import.meta.url);
  const child = spawnSync(process.execPath, [...NODE_HEAP_OPTIONS, ...process.execArgv, script, ...argv], { stdio: 'inherit' });
  if (child.error) throw child.error;
  return child.status ?? 1;
}

async function main(argv: string[]): Promise<number> {
  if (!startedWithHeapOptions()) return rerunWithHeapOptions(argv);
  tuneGarbageCollector();
  useNativeKernels(loadNativeModule());
  const json = argv.includes('--json');
  const args = argv.filter((a) => a !== '--json');
  const name = args[0];
  const bench = name ? BENCHMARKS[name] : undefined;
  if (!bench) {
    process.stderr.write(`usage: npm run bench -- <${Object.keys(BENCHMARKS).join('|')}> [--json]\n`);
    return 2;
  }
  const log = (line: string): void => void (json ? process.stderr : process.stdout).write(`${line}\n`);
  const figures = await bench.run(args.slice(1), log);
  if (json) process.stdout.write(`${JSON.stringify({ bench: name, ...figures })}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
