/**
 * `fedhpc simulate --containers`: the local federation of `fedhpc simulate`, each part in its own
 * container, through the built CLI as a user runs it; with `--shards 2`, each aggregator shard in a
 * container of its own.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { docker } from '../../simulate/images.js';
import { CLI } from '../helpers/federation.js';
import { skipWithoutDocker, testImages } from './harness.js';

const skip = await skipWithoutDocker();

interface Line {
  type: string;
  [key: string]: unknown;
}

describe.skipIf(skip)('fedhpc simulate --containers', () => {
  it('runs three site containers and a coordinator container to the end, then removes them and their network', { timeout: 300_000 }, async () => {
    await testImages(); // built once for the whole suite (and reused here by its content hash)
    const r = spawnSync(process.execPath, [CLI, 'simulate', '--containers', '--sites', '3', '--rounds', '2', '--timeout', '240', '--json'], {
      encoding: 'utf8',
      timeout: 280_000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Line);
    const start = lines.find((l) => l.type === 'start')!;
    expect(start['coordinator']).toBe('coordinator:7443');
    const rounds = lines.filter((l) => l.type === 'round');
    expect(rounds.map((l) => l['round'])).toEqual([1, 2]);
    // k of n: simulate commits with all sites but one when one is slow (two cores, many containers).
    for (const l of rounds) {
      expect((l['participants'] as string[]).length).toBeGreaterThanOrEqual(2);
      for (const p of l['participants'] as string[]) expect(['site-1', 'site-2', 'site-3']).toContain(p);
    }
    const summary = lines.find((l) => l.type === 'summary')!;
    expect(summary['modelSha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(summary['finalEvalLoss'] as number).toBeLessThan(summary['initialEvalLoss'] as number);
    // Nothing is left behind: no container or network of any simulation.
    expect((await docker(['ps', '--all', '--quiet', '--filter', 'label=fedhpc.simulation'])).trim()).toBe('');
    expect((await docker(['network', 'ls', '--quiet', '--filter', 'name=fedhpc-sim-'])).trim()).toBe('');
  });

  it('runs a plain round whose sites upload their parts to two shard containers, which aggregate it beside the coordinator container, sharing its state dir', { timeout: 300_000 }, async () => {
    await testImages();
    const stateDir = mkdtempSync(join(tmpdir(), 'fedhpc-sim-shards-'));
    try {
      const r = spawnSync(process.execPath, [CLI, 'simulate', '--containers', '--shards', '2', '--sites', '2', '--rounds', '1', '--no-secure-aggregation', '--state-dir', stateDir, '--timeout', '240', '--json'], {
        encoding: 'utf8',
        timeout: 280_000,
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Line);
      expect(lines.find((l) => l.type === 'summary')).toMatchObject({ rounds: 1, shards: { count: 2, roundsAggregated: 1 } });
      // Each shard ran in a container of the federation's network (it reached the coordinator by its
      // container hostname, which resolves only there) and stepped its part of the one round.
      for (const shard of ['shard-1', 'shard-2']) {
        const log = readFileSync(join(stateDir, 'logs', `${shard}.log`), 'utf8')
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as { msg: string; shard: string; coordinator?: string });
        expect(log.find((l) => l.msg === 'attached to the leader')).toMatchObject({ shard, coordinator: 'coordinator:7443' });
        expect(log.filter((l) => l.msg === "aggregated the shard's part")).toHaveLength(1);
        // Both sites sent it their part of the delta, across the federation's network.
        expect(log.filter((l) => l.msg === 'upload verified').map((l) => (l as { site?: string }).site).sort()).toEqual(['site-1', 'site-2']);
      }
      expect((await docker(['ps', '--all', '--quiet', '--filter', 'label=fedhpc.simulation'])).trim()).toBe('');
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('refuses --containers with a job runner, whose trainer needs a Python the image lacks', () => {
    const r = spawnSync(process.execPath, [CLI, 'simulate', '--containers', '--runner', 'command'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--containers runs the builtin trainer only');
  });
});
