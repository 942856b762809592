/**
 * Guarantee 9: a coordinator SIGKILLed during a secure round's `unmask` phase is restarted; the
 * round starts again as a new attempt at `keys`, and every site makes fresh keys for it. Three real
 * site agents and one raw secure site (site-4), which captures the advertisements the coordinator
 * relays in each attempt: no public key of the first attempt appears in the second, so no pairwise
 * mask and no self mask of the interrupted attempt is applied to a second vector.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { SharesTask__Output } from '../../proto/index.js';
import { createTestFederation, startCoordinatorProcess, startSiteProcess, waitFor, type Proc, type TestFederation } from '../helpers/federation.js';
import { isRunning, journalBodies, journalPath, parseLog, whileAlive } from '../helpers/faults.js';
import { secureRun, siteDelta } from '../helpers/secure-federation.js';
import { SecureRawSite, participate, type Behaviour } from '../helpers/secure-raw-site.js';

let fed: TestFederation | undefined;
const procs: Proc[] = [];
const raws: SecureRawSite[] = [];
afterEach(async () => {
  for (const r of raws.splice(0)) r.close();
  for (const p of procs.splice(0).reverse()) await p.stop();
  await fed?.cleanup();
  fed = undefined;
});

/** sPk (hex) per site in a relayed shares task. */
function relayedKeys(t: SharesTask__Output): Map<string, { s: string; c: string }> {
  return new Map(t.advertisements.map((a) => [a.siteId, { s: Buffer.from(a.sPublicKey).toString('hex'), c: Buffer.from(a.cPublicKey).toString('hex') }]));
}

describe('a coordinator killed during a secure round', () => {
  it('restarts the round at keys as a new attempt with fresh keys at every site, and commits it', async () => {
    fed = await createTestFederation({
      sites: 4,
      run: secureRun({ rounds: 1, minSites: 3, evaluate: false, strategy: { name: 'diloco' }, train: { steps: 4, batchSize: 16, lr: 0.01 } }),
    });
    const first = await startCoordinatorProcess(fed);
    procs.push(first);
    const agents: Proc[] = [];
    for (const s of ['site-1', 'site-2', 'site-3']) agents.push(await startSiteProcess(fed, s));
    procs.push(...agents);
    const admin = fed.admin();
    await admin.waitForReady(Date.now() + 30_000);

    // Attempt 0: site-4 takes part until the consistency request (`unmask` has begun), then the
    // coordinator is killed before it can unmask anything.
    const before = new SecureRawSite(fed, 'site-4', 'site-4-before');
    raws.push(before);
    await before.connect();
    let killed!: () => void;
    const crash = new Promise<void>((r) => (killed = r));
    const behaviour: Behaviour = {
      samples: 500,
      delta: siteDelta('site-4', 1),
      async beforeSign() {
        expect(await first.stop('SIGKILL')).toBe('SIGKILL');
        killed();
        throw new Error('coordinator killed');
      },
    };
    const part0 = participate(before, 1, behaviour, crash).catch((err: Error) => err.message);
    await whileAlive(crash, agents);
    expect(await part0).toBe('coordinator killed');
    const sharesBefore = before.tasks.map((t) => t.shares).filter((t): t is SharesTask__Output => !!t);
    expect(sharesBefore.map((t) => t.attempt)).toEqual([0]);
    const keys0 = relayedKeys(sharesBefore[0]!);
    expect([...keys0.keys()].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);

    const journalBefore = await journalBodies(journalPath(fed), 'round-opened');
    expect(journalBefore.map((b) => [b['round'], b['attempt']])).toEqual([[1, 0]]);
    expect(await journalBodies(journalPath(fed), 'round-committed')).toEqual([]);

    // Restart on the same state and port; the agents reconnect by themselves, site-4 anew.
    const second = await startCoordinatorProcess(fed, 'coordinator-2');
    procs.push(second);
    await admin.waitForReady(Date.now() + 30_000);
    const after = new SecureRawSite(fed, 'site-4', 'site-4-after');
    raws.push(after);
    await waitFor('site-4 to reconnect', async () => after.connect().then(() => true), 30_000, 500);
    const done = waitFor('round 1 to commit', async () => ((await admin.rounds()).rounds.find((r) => r.outcome === 'committed')), 120_000, 250);
    const part1 = await whileAlive(participate(after, 1, { samples: 500, delta: siteDelta('site-4', 1) }, done), [...agents, second]);
    const info = await done;
    expect(part1.map((o) => [o.attempt, o.outcome])).toEqual([[1, 'revealed']]);
    expect(info.attempt).toBe(1);
    expect([...info.participants].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);

    // The journal: the interrupted attempt 0 was never committed; attempt 1 was opened and committed.
    expect((await journalBodies(journalPath(fed), 'round-opened')).map((b) => [b['round'], b['attempt']])).toEqual([
      [1, 0],
      [1, 1],
    ]);
    expect((await journalBodies(journalPath(fed), 'round-committed')).map((b) => [b['round'], b['attempt']])).toEqual([[1, 1]]);

    // The restarted coordinator ran attempt 1 from keys, through every secure phase, in order.
    const phases = parseLog(await second.logText())
      .filter((l) => typeof l.msg === 'string' && l.msg.startsWith('phase ') && l['round'] === 1)
      .map((l) => `${String(l['attempt'])}:${String(l['phase'])}`);
    expect(phases).toEqual(['1:open', '1:keys', '1:shares', '1:training', '1:upload', '1:unmask', '1:aggregate', '1:commit']);

    // Fresh keys everywhere: no public key relayed in attempt 0 comes back in attempt 1.
    const sharesAfter = after.tasks.map((t) => t.shares).filter((t): t is SharesTask__Output => !!t);
    expect(sharesAfter.map((t) => t.attempt)).toEqual([1]);
    const keys1 = relayedKeys(sharesAfter[0]!);
    expect([...keys1.keys()].sort()).toEqual(['site-1', 'site-2', 'site-3', 'site-4']);
    const old = new Set([...keys0.values()].flatMap((k) => [k.s, k.c]));
    for (const [site, k] of keys1) {
      expect(old.has(k.s), `${site} sPk reused`).toBe(false);
      expect(old.has(k.c), `${site} cPk reused`).toBe(false);
    }
    // site-4's own secrets of the two attempts differ too (its self-mask seed, its key pairs).
    const s0 = [...before.sessions.values()][0]!.session.masks().selfSeed;
    const s1 = [...after.sessions.values()][0]!.session.masks().selfSeed;
    expect(Buffer.from(s0).equals(Buffer.from(s1))).toBe(false);
    // The agents lived through the crash and took part in the new attempt.
    for (const p of agents) expect(isRunning(p.child)).toBe(true);
  }, 150_000);
});
