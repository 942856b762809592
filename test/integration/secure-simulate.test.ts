/**
 * Guarantee 2 through the command line: `fedhpc simulate --drop SITE@PHASE --json` with secure
 * aggregation on (the default). Two sites die in round 1 — site-3 at `keys`, site-2 at `unmask` —
 * with t = max(2, minSites) = 2: the round completes with the survivors; site-2's masked input was
 * already in the sum, so it is a participant, site-3 is dropped; round 2 runs with everybody back.
 * (Every phase, one at a time, and the below-threshold abort: `secure-dropout.test.ts`.)
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI } from '../helpers/federation.js';
import { journalBodies } from '../helpers/faults.js';

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

function simulate(args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, 'simulate', ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') return reject(err);
      resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr });
    });
  });
}

describe('fedhpc simulate --drop under secure aggregation', () => {
  it('reports the dropped site at keys as dropped and the one lost at unmask as a participant, and finishes the run', async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-secure-sim-'));
    const state = join(dir, 'state');
    const r = await simulate(['--sites', '4', '--rounds', '2', '--min-sites', '2', '--drop', 'site-3@keys', '--drop', 'site-2@unmask', '--json', '--state-dir', state, '--timeout', '150'], 170_000);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l['type'])).toEqual(['start', 'round', 'round', 'summary']);
    const [round1, round2] = lines.filter((l) => l['type'] === 'round');
    expect(round1).toMatchObject({ round: 1, secure: true, dropped: ['site-3'] });
    expect([...(round1!['participants'] as string[])].sort()).toEqual(['site-1', 'site-2', 'site-4']);
    expect(round2).toMatchObject({ round: 2, secure: true });
    const journal = join(state, 'federation', 'coordinator', 'state', 'journal.jsonl');
    expect((await journalBodies(journal, 'round-committed')).map((b) => [b['round'], b['attempt']])).toEqual([
      [1, 0],
      [2, 0],
    ]);
    expect(await journalBodies(journal, 'round-aborted')).toEqual([]);
  }, 180_000);
});
