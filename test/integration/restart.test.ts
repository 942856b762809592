import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { readJournal, verifyChain } from '../../coordinator/index.js';
import {
  createTestFederation,
  startCoordinatorProcess,
  startSiteProcess,
  waitFor,
  waitForCommitted,
  type Proc,
  type TestFederation,
} from '../helpers/federation.js';
import { isRunning, journalPath, uploadRateFor, whileAlive, readJsonLines, type JournalLine } from '../helpers/faults.js';

/** Body fields of the journal records these tests read. */
interface Opened {
  type: 'round-opened';
  round: number;
  attempt: number;
}
interface Committed {
  type: 'round-committed';
  round: number;
  attempt: number;
  parentSha256: string;
  modelSha256: string;
}

async function journalOf(fed: TestFederation): Promise<JournalLine[]> {
  return readJsonLines<JournalLine>(journalPath(fed));
}

function bodies<T>(lines: readonly JournalLine[], type: string): T[] {
  return lines.map((l) => l.body).filter((b) => b.type === type) as unknown as T[];
}

/** Checks the committed rounds of a journal: 1..n, once each, in order, each model the next one's parent. */
function expectCommittedChain(lines: readonly JournalLine[], n: number): Committed[] {
  const committed = bodies<Committed>(lines, 'round-committed');
  expect(committed.map((c) => c.round)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  const started = bodies<{ initialModelSha256: string }>(lines, 'run-started');
  expect(started).toHaveLength(1);
  expect(committed[0]!.parentSha256).toBe(started[0]!.initialModelSha256);
  for (let i = 1; i < committed.length; i++) expect(committed[i]!.parentSha256).toBe(committed[i - 1]!.modelSha256);
  return committed;
}

/** Adds to a failure which processes died and the tail of their logs (and of `main`'s). */
async function withLogs<T>(p: Promise<T>, main: Proc, others: readonly Proc[]): Promise<T> {
  try {
    return await p;
  } catch (err) {
    const parts = [(err as Error).message];
    for (const proc of [main, ...others.filter((o) => o !== main && !isRunning(o.child))]) {
      const tail = (await proc.logText().catch(() => '')).split('\n').slice(-12).join('\n');
      parts.push(`--- ${proc.log} (exit: ${String(proc.child.exitCode ?? proc.child.signalCode ?? 'running')}):\n${tail}`);
    }
    throw new Error(parts.join('\n'));
  }
}

describe('a coordinator that crashes and is restarted', () => {
  let fed: TestFederation | undefined;
  const procs: Proc[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
    fed = undefined;
  });

  /** A federation whose every site takes ~1.5 s to upload, so a round lasts long enough to be interrupted. */
  async function slowFederation(rounds: number): Promise<TestFederation> {
    const f = await createTestFederation({ sites: 3, run: { rounds } });
    const rate = await uploadRateFor(f, 1.5);
    for (const s of f.sites) {
      await f.patchSiteConfig(s, (cfg) => ({ ...cfg, transfer: { chunkBytes: 4096, uploadRateBytesPerS: rate } }));
    }
    return f;
  }

  async function startSites(f: TestFederation): Promise<void> {
    for (const s of f.sites) procs.push(await startSiteProcess(f, s));
  }

  it('finishes the run after a SIGKILL mid-round: every round committed exactly once, in order, the interrupted one under a new attempt', async () => {
    fed = await slowFederation(4);
    const first = await startCoordinatorProcess(fed);
    procs.push(first);
    await startSites(fed);
    const admin = fed.admin();

    await waitForCommitted(admin, 1);
    const during = await waitFor(
      'round 2 or 3 to be uploading',
      async () => {
        const s = await admin.status();
        const round = Number(s.round);
        return round >= 2 && round <= 3 && s.phase === 'upload' ? s : undefined;
      },
      60_000,
      50,
    );
    expect(await first.stop('SIGKILL')).toBe('SIGKILL');

    // What the crash left: the interrupted round was opened but never committed.
    const before = await journalOf(fed);
    const committedBefore = bodies<Committed>(before, 'round-committed').map((c) => c.round);
    const interrupted = committedBefore.length + 1;
    expect(interrupted).toBeGreaterThanOrEqual(Number(during.round));
    expect(interrupted).toBeLessThan(4 + 1);
    const attemptsBefore = bodies<Opened>(before, 'round-opened').filter((o) => o.round === interrupted).map((o) => o.attempt);
    expect(attemptsBefore.length).toBeGreaterThan(0);

    // Same config, state and port: the agents find it again by themselves.
    const agents = procs.filter((p) => p !== first);
    const second = await startCoordinatorProcess(fed, 'coordinator-2');
    procs.push(second);
    const rounds = await withLogs(whileAlive(waitForCommitted(admin, 4, 120_000), [...agents, second]), second, procs);

    const committed = rounds.rounds.filter((r) => r.outcome === 'committed');
    expect(committed.map((r) => Number(r.round))).toEqual([1, 2, 3, 4]);
    for (let i = 1; i < committed.length; i++) expect(committed[i]!.parentSha256).toBe(committed[i - 1]!.modelSha256);
    const resumed = committed[interrupted - 1]!;
    expect(resumed.attempt).toBeGreaterThan(Math.max(...attemptsBefore));

    const lines = await journalOf(fed);
    const journaled = expectCommittedChain(lines, 4);
    expect(journaled[interrupted - 1]!.attempt).toBe(resumed.attempt);
    expect(journaled.map((c) => c.modelSha256)).toEqual(committed.map((r) => r.modelSha256));
    // The pre-crash part of the journal is kept as it was, the restart only appended to it.
    expect(lines.slice(0, before.length)).toEqual(before);
    const records = await readJournal(journalPath(fed), { repairTornTail: false });
    // A receipt may have been journaled since `lines` was read: the chain covers whatever is there.
    expect(records.length).toBeGreaterThanOrEqual(lines.length);
    expect(verifyChain(records)).toEqual({ ok: true, records: records.length });
    expect((await admin.status()).globalModelSha256).toBe(committed[3]!.modelSha256);
    // The agents lived through the coordinator's crash (they were mid-upload when it died).
    for (const p of agents) expect(isRunning(p.child)).toBe(true);
  }, 150_000);

  it('repairs a torn last journal line left by the crash and goes on with the run', async () => {
    fed = await createTestFederation({ sites: 3, run: { rounds: 3 } });
    const first = await startCoordinatorProcess(fed);
    procs.push(first);
    await startSites(fed);
    const admin = fed.admin();
    await waitForCommitted(admin, 1);
    await first.stop('SIGKILL');

    const path = journalPath(fed);
    const intact = await readFile(path, 'utf8');
    const before = await journalOf(fed);
    const committedBefore = bodies<Committed>(before, 'round-committed').length;
    expect(committedBefore).toBeLessThan(3);
    // An append cut short by the crash: half a record and no newline.
    const torn = '{"seq":' + String(before.length + 1) + ',"ts":1700000000000,"prev":"' + before.at(-1)!.hash.slice(0, 20);
    await appendFile(path, torn);

    const agents = procs.filter((p) => p !== first);
    const second = await startCoordinatorProcess(fed, 'coordinator-2');
    procs.push(second);
    await withLogs(whileAlive(waitForCommitted(admin, 3, 120_000), [...agents, second]), second, procs);

    const text = await readFile(path, 'utf8');
    expect(text.startsWith(intact)).toBe(true);
    expect(text).not.toContain(torn);
    const lines = await journalOf(fed);
    expectCommittedChain(lines, 3);
    const records = await readJournal(path, { repairTornTail: false });
    // A receipt may have been journaled since `lines` was read: the chain covers whatever is there.
    expect(records.length).toBeGreaterThanOrEqual(lines.length);
    expect(verifyChain(records)).toEqual({ ok: true, records: records.length });
  }, 120_000);

  it('refuses to resume the run with another strategy learning rate and secure aggregation off (RUN_CONFIG_MISMATCH), leaving the journal as it was', async () => {
    // No sites: the run is journaled at start-up, which is all a restart compares.
    fed = await createTestFederation({ sites: 2, run: { rounds: 2 } });
    const first = await startCoordinatorProcess(fed);
    procs.push(first);
    const started = () => journalOf(fed!).then((lines) => (lines.some((l) => l.body.type === 'round-opened') ? true : undefined), () => undefined);
    await waitFor('the run to be journaled', started, 30_000, 50);
    await first.stop('SIGKILL');
    const path = journalPath(fed);
    const before = await readFile(path, 'utf8');

    await fed.patchCoordinatorConfig((cfg) => ({ ...cfg, run: { ...(cfg['run'] as object), strategy: { name: 'diloco', lr: 0.5 }, secureAggregation: { enabled: false } } }));
    const again = await startCoordinatorProcess(fed, 'coordinator-2');
    procs.push(again);
    expect(await again.exited).toBe(1);
    const lines = (await again.logText()).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; code?: string; msg: string });
    const fatal = lines.find((l) => l.level === 60);
    expect(fatal).toMatchObject({ code: 'RUN_CONFIG_MISMATCH', context: { runId: 'test-run', fields: 'run.strategy.lr, run.secureAggregation.enabled' } });
    expect(fatal?.msg).toContain('run.strategy.lr: journal 0.7, config 0.5; run.secureAggregation.enabled: journal true, config false');
    // Refused before anything was appended (not even the members of the config).
    expect(await readFile(path, 'utf8')).toBe(before);
  }, 60_000);

  it('refuses to start on a journal whose middle record was altered, and names the line', async () => {
    fed = await createTestFederation({ sites: 3, run: { rounds: 1 } });
    const first = await startCoordinatorProcess(fed);
    procs.push(first);
    await startSites(fed);
    await waitForCommitted(fed.admin(), 1);
    for (const p of procs.splice(0).reverse()) await p.stop();

    const path = journalPath(fed);
    const lines = (await readFile(path, 'utf8')).split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThanOrEqual(3);
    // Rewrite round 1's commit record (a middle line): someone edits the history.
    const index = lines.findIndex((l) => (JSON.parse(l) as JournalLine).body.type === 'round-committed');
    expect(index).toBeGreaterThan(0);
    expect(index).toBeLessThan(lines.length - 1);
    const record = JSON.parse(lines[index]!) as { body: { participants: unknown[] } };
    record.body.participants = record.body.participants.slice(1);
    lines[index] = JSON.stringify(record);
    const tampered = `${lines.join('\n')}\n`;
    await writeFile(path, tampered);

    const again = await startCoordinatorProcess(fed, 'coordinator-2');
    procs.push(again);
    const code = await again.exited;
    expect(code).not.toBe(0);
    expect(typeof code).toBe('number');
    const log = await again.logText();
    expect(log).toContain('STATE_CORRUPT');
    expect(log).toContain('journal.jsonl');
    expect(log).toMatch(new RegExp(`(line|record) ${index + 1}\\b`));
    // Damage in the middle is never "repaired" away.
    expect(await readFile(path, 'utf8')).toBe(tampered);
  }, 90_000);
});
