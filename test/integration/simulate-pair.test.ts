/**
 * `fedhpc simulate --coordinators 2 --nats-cluster 3 --kill-leader-at upload` (issue 19): the CLI
 * runs a standby pair over a real 3-node NATS cluster on loopback, the leader SIGKILLs itself on
 * entering `upload` in round 1, the standby takes over, and the run's JSON lines say so — one leader
 * change with its failover time — and that the replicated journal commits every round once.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { skipUnless } from '../helpers/components.js';
import { CLI } from '../helpers/federation.js';
import { natsUnavailable } from '../helpers/nats.js';

const skip = skipUnless('nats', natsUnavailable());

type Line = Record<string, unknown> & { type: string };

function runCli(args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') return reject(err);
      resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr });
    });
  });
}

describe.skipIf(skip)('fedhpc simulate with a standby pair', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('shows a failover when the leader is killed in upload: one leader change, every round committed once in the replicated journal', async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-sim-pair-'));
    const args = ['simulate', '--coordinators', '2', '--nats-cluster', '3', '--kill-leader-at', 'upload', '--sites', '3', '--rounds', '3', '--no-secure-aggregation', '--json', '--state-dir', join(dir, 'state'), '--timeout', '200'];
    const r = await runCli(args, 240_000);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line);
    const leaders = lines.filter((l) => l.type === 'leader');
    expect(leaders.map((l) => l['holder'])).toEqual(['coord-a', 'coord-b']);
    expect(leaders[1]).toMatchObject({ previous: 'coord-a', killedAt: 'phase.upload', round: 1, leaseTtlS: 4 });
    expect(leaders[1]!['failoverS']).toBeLessThan(30);
    expect(lines.filter((l) => l.type === 'round').map((l) => l['round'])).toEqual([1, 2, 3]);
    const summary = lines.at(-1)!;
    expect(summary).toMatchObject({ type: 'summary', rounds: 3, ha: { leaderChanges: 1, committedRounds: [1, 2, 3], committedRoundsLost: 0, roundsRepeated: 0 } });
  }, 300_000);
});
