/**
 * A stand-in site agent for the re-attach test: a separate process that builds a SlurmRunner and
 * trains one shard, so the test can kill it (SIGKILL) while its Slurm job runs. Run with vite-node:
 * `slurm-agent-child.ts '<json {options, workDir, request}>'`.
 */
import { SlurmRunner, slurmRunnerSchema } from '../../../site-agent/runners/slurm.js';

const arg = JSON.parse(process.argv[2] ?? '{}') as {
  options: unknown;
  workDir: string;
  env: NodeJS.ProcessEnv;
  request: { runId: string; round: number; attempt: number; globalPath: string; globalSha256: string; roundDir: string; train: Record<string, unknown> };
};
const runner = new SlurmRunner(slurmRunnerSchema.parse(arg.options), { workDir: arg.workDir, env: arg.env });
const result = await runner.train({ ...arg.request, signal: new AbortController().signal, onProgress: () => undefined });
process.stdout.write(`${JSON.stringify(result)}\n`);
