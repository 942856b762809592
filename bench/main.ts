/**
 * `npm run bench -- NAME [--json]`: runs one benchmark. Each prints human-readable lines and, with
 * `--json`, a last line holding its figures. Every benchmark measures its baseline in the same run.
 */
import { useNativeKernels } from '../aggregation/index.js';
import { loadNativeModule } from '../common/native.js';
import { BENCHMARKS } from './registry.js';

async function main(argv: string[]): Promise<number> {
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
