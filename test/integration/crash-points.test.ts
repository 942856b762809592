/**
 * Crash safety in every phase: the coordinator SIGKILLs itself at a kill point (each plain and
 * secure phase, and inside `commit` on either side of the journal append), is restarted on the
 * same state dir, and the run finishes with every round committed exactly once, in order, the
 * journal intact, and the real site agents reconnecting by themselves.
 */
import { describe, expect, it } from 'vitest';
import { readJournal, verifyChain } from '../../coordinator/index.js';
import type { CrashPoint } from '../../coordinator/core/crash-points.js';
import { startArmedCoordinator } from '../helpers/crash.js';
import { journalPath, readJsonLines, whileAlive, isRunning, type JournalLine } from '../helpers/faults.js';
import { createTestFederation, startCoordinatorProcess, startSiteProcess, waitFor, type Proc, type TestFederation } from '../helpers/federation.js';
import { secureRun } from '../helpers/secure-federation.js';

const ROUNDS = 2;
const TRAIN = { steps: 4, batchSize: 16, lr: 0.01 };

interface Case {
  readonly point: CrashPoint;
  readonly secure: boolean;
}

const CASES: Case[] = [
  ...(['phase.training', 'phase.upload', 'upload.half', 'phase.aggregate', 'phase.commit', 'commit.before-journal', 'commit.after-journal'] as const).map((point) => ({ point, secure: false })),
  ...(['phase.keys', 'phase.shares', 'phase.upload', 'phase.unmask'] as const).map((point) => ({ point, secure: true })),
];

function bodies(lines: readonly JournalLine[], type: string): Record<string, unknown>[] {
  return lines.map((l) => l.body).filter((b) => b.type === type);
}

/** `p`, unless one of `procs` exits with an error first (agents exit 0 once the run is over). */
function unlessCrashed<T>(p: Promise<T>, procs: readonly Proc[]): Promise<T> {
  const crashed = procs.map((proc) =>
    proc.exited.then((code) => (code === 0 ? new Promise<never>(() => undefined) : Promise.reject(new Error(`${proc.log} exited with ${String(code)}`)))),
  );
  return Promise.race([p, ...crashed]);
}

async function federationFor(c: Case): Promise<TestFederation> {
  const deadlines = { openS: 30, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15 };
  return c.secure
    ? createTestFederation({ sites: 3, run: secureRun({ rounds: ROUNDS, minSites: 3, strategy: { name: 'diloco' }, train: TRAIN }) })
    : // Secure aggregation is on by default: a plain case says so.
      createTestFederation({ sites: 2, run: { rounds: ROUNDS, minSites: 2, evaluate: false, train: TRAIN, deadlines, secureAggregation: { enabled: false } } });
}

describe('a coordinator killed at each kill point and restarted', () => {
  it.concurrent.each(CASES.map((c) => [`${c.secure ? 'secure' : 'plain'} ${c.point}`, c] as const))('%s: no round lost or repeated, the run finishes', async (_n, c) => {
    const fed = await federationFor(c);
    const procs: Proc[] = [];
    // Cases run two at a time: each cleans up its own federation, not a shared afterEach.
    try {
      await crashAndRestart(c, fed, procs);
    } finally {
      for (const p of procs.reverse()) await p.stop();
      await fed.cleanup();
    }
  }, 240_000);
});

async function crashAndRestart(c: Case, fed: TestFederation, procs: Proc[]): Promise<void> {
    if (c.point === 'upload.half') {
      // Uploads in 4 KiB chunks at 64 KB/s (about 1.3 s a delta), so the kill lands inside them.
      for (const s of fed.sites) await fed.patchSiteConfig(s, (cfg) => ({ ...cfg, transfer: { ...(cfg['transfer'] as object | undefined), chunkBytes: 4096, uploadRateBytesPerS: 65_536 } }));
    }
    const armed = await startArmedCoordinator(fed, c.point);
    procs.push(armed);
    for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
    const agents = procs.slice(1);

    expect(await whileAlive(armed.exited, agents)).toBe('SIGKILL');
    const before = await readJsonLines<JournalLine>(journalPath(fed));
    const committedBefore = bodies(before, 'round-committed').map((b) => b['round']);
    expect(committedBefore.length).toBeLessThan(ROUNDS + 1);
    if (c.point === 'commit.after-journal') expect(committedBefore).toEqual([1]);
    if (c.point === 'commit.before-journal') expect(committedBefore).toEqual([]);
    const interrupted = committedBefore.length + 1;
    const attemptsBefore = bodies(before, 'round-opened').filter((b) => b['round'] === interrupted).map((b) => Number(b['attempt']));

    const second = await startCoordinatorProcess(fed, 'coordinator-2');
    procs.push(second);
    // The journal is the record (the coordinator may exit on its own once the run is finished).
    await unlessCrashed(
      waitFor('the run to finish', async () => (bodies(await readJsonLines<JournalLine>(journalPath(fed)), 'run-finished').length > 0 ? true : undefined), 150_000, 250),
      [second, ...agents],
    );
    const after = await readJsonLines<JournalLine>(journalPath(fed));
    const committed = bodies(after, 'round-committed');
    expect(committed[1]!['parentSha256']).toBe(committed[0]!['modelSha256']);
    expect(after.slice(0, before.length)).toEqual(before);
    const journaled = bodies(after, 'round-committed');
    expect(journaled.map((b) => b['round'])).toEqual([1, 2]);
    if (attemptsBefore.length > 0 && interrupted <= ROUNDS) {
      // The interrupted round was restarted under a fresh attempt (secure: from keys, new keys).
      expect(Number(journaled[interrupted - 1]!['attempt'])).toBeGreaterThan(Math.max(...attemptsBefore));
    }
    if (!c.secure && (c.point === 'phase.aggregate' || c.point === 'phase.commit' || c.point === 'commit.before-journal')) {
      // Every upload was verified before the kill: the new attempt keeps them all (upload/reuse.ts),
      // the sites train nothing again and send no byte of their deltas again.
      const reopened = journaled[interrupted - 1]!;
      expect(Number(reopened['bytesReused'])).toBeGreaterThan(0);
      expect(Number(reopened['bytesUp'])).toBe(0);
    }
    if (c.point === 'upload.half') {
      // Half the bytes had arrived: what was verified (or acknowledged inside a tensor) is kept, the rest sent again.
      const reopened = journaled[interrupted - 1]!;
      const kill = (await armed.logText()).split('\n').filter((l) => l.includes('kill point upload.half reached')).map((l) => JSON.parse(l) as { bytesUp: number; expectedBytes: number })[0]!;
      expect(kill.bytesUp * 2).toBeGreaterThanOrEqual(kill.expectedBytes);
      process.stdout.write(`upload.half: ${kill.bytesUp} of ${kill.expectedBytes} bytes received before the kill, ${String(reopened['bytesReused'])} kept, ${String(reopened['bytesUp'])} sent again\n`);
      expect(Number(reopened['bytesReused'])).toBeGreaterThan(kill.bytesUp / 2);
      expect(Number(reopened['bytesUp'])).toBeLessThan(kill.expectedBytes);
      expect(Number(reopened['bytesUp']) + Number(reopened['bytesReused'])).toBeGreaterThanOrEqual(kill.expectedBytes);
    }
    // Read again: a late receipt may have been appended since `after` (the chain must cover it too).
    const records = await readJournal(journalPath(fed), { repairTornTail: false });
    expect(records.length).toBeGreaterThanOrEqual(after.length);
    expect(verifyChain(records)).toEqual({ ok: true, records: records.length });
    expect(second.child.exitCode ?? 0).toBe(0);
    for (const p of agents) expect(isRunning(p.child) || p.child.exitCode === 0).toBe(true);
}
