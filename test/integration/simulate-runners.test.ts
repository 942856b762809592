import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { torchAvailable } from '../unit/trainers/require-torch.js';
import { skipUnless, slurmUnavailable } from '../helpers/components.js';
import { CLI } from '../helpers/federation.js';

const exec = promisify(execFile);
const noTorch = !torchAvailable().ok;
const noSlurm = noTorch || skipUnless('slurm', slurmUnavailable());

interface Line {
  type: string;
  round?: number;
  participants?: string[];
  secure?: boolean;
  initialEvalLoss?: number;
  finalEvalLoss?: number;
}

async function simulate(args: string[], dir: string): Promise<Line[]> {
  const { stdout } = await exec(process.execPath, [CLI, 'simulate', '--json', '--state-dir', dir, ...args], { timeout: 300_000 });
  return stdout.trim().split('\n').map((l) => JSON.parse(l) as Line);
}

describe('fedhpc simulate with the PyTorch reference trainer as a job', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it.skipIf(noTorch)('trains a federation through the command runner, secure aggregation on, and lowers the loss', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-sim-cmd-'));
    dirs.push(dir);
    const lines = await simulate(['--runner', 'command', '--sites', '3', '--rounds', '2'], dir);
    const rounds = lines.filter((l) => l.type === 'round');
    expect(rounds.map((r) => r.round)).toEqual([1, 2]);
    for (const r of rounds) {
      expect(r.secure).toBe(true);
      expect([...r.participants!].sort()).toEqual(['site-1', 'site-2', 'site-3']);
    }
    const summary = lines.at(-1)!;
    expect(summary.type).toBe('summary');
    expect(summary.finalEvalLoss!).toBeLessThan(summary.initialEvalLoss! * 0.8);
  }, 300_000);

  it.skipIf(noSlurm)('trains a federation through real Slurm jobs on the one-node cluster', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-sim-slurm-'));
    dirs.push(dir);
    const lines = await simulate(['--runner', 'slurm', '--sites', '3', '--rounds', '1'], dir);
    const round = lines.find((l) => l.type === 'round')!;
    expect([...round.participants!].sort()).toEqual(['site-1', 'site-2', 'site-3']);
    expect(lines.at(-1)!.finalEvalLoss!).toBeLessThan(lines.at(-1)!.initialEvalLoss!);
  }, 300_000);
});
