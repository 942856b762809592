/**
 * A standby's check of its configured run against the journal it follows (coordinator/ha/run-check.ts,
 * issue 19): refused as soon as the journal is read, or later when the leader journals a run it
 * differs from; a journal that cannot be read yet is warned about once and tried again.
 */
import { describe, expect, it } from 'vitest';
import { auditedConfig } from '../../../coordinator/audit/config.js';
import { runSchema, type ResolvedRun } from '../../../coordinator/config.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { startRunCheck, type JournalReader } from '../../../coordinator/ha/run-check.js';
import { runPlanFromConfig } from '../../../coordinator/shell/plan.js';
import type { JournalRecord } from '../../../coordinator/state/journal.js';
import { testLogger } from '../../helpers/logger.js';

const run = (lr: number): ResolvedRun => runSchema.parse({ id: 'run-a', rounds: 3, minSites: 1, strategy: { name: 'diloco', lr }, maxSiteWeight: 10 });

/** The `run-started` record of `r`, as a leader journals it. */
const started = (r: ResolvedRun): JournalRecord => ({
  seq: 1,
  ts: 0,
  prev: '',
  hash: '',
  body: { type: 'run-started', runId: r.id, plan: runPlanFromConfig({ run: r }), strategy: r.strategy, weighting: r.weighting, encoding: r.encoding, train: r.train, initialModelSha256: 'a'.repeat(64), config: JSON.parse(JSON.stringify(auditedConfig({ run: r }))) as Record<string, unknown> },
});

/** A reader over `records` (the test appends to it), and whether it was closed. */
function readerOf(records: JournalRecord[]): JournalReader & { closed: boolean } {
  return {
    closed: false,
    records: () => records,
    close() {
      this.closed = true;
      return Promise.resolve();
    },
  };
}

const settled = () => new Promise((r) => setImmediate(r));

/** A check of `configured` over `records`, checked once after its start; `refusal()` is what it refused with so far. */
async function checkedOnce(configured: ResolvedRun, records: JournalRecord[]): Promise<{ check: ReturnType<typeof startRunCheck>; refusal: () => unknown }> {
  const check = startRunCheck({ config: { run: configured }, logger: testLogger().logger, openReader: () => Promise.resolve(readerOf(records)) });
  let refused: unknown;
  void check.refused.then((err) => (refused = err));
  await settled();
  check.check();
  await settled();
  return { check, refusal: () => refused };
}

describe("a standby's check of its configured run against the journal", () => {
  it('refuses with RUN_CONFIG_MISMATCH as soon as the journal is read', async () => {
    const reader = readerOf([started(run(0.7))]);
    const check = startRunCheck({ config: { run: run(0.5) }, logger: testLogger().logger, openReader: () => Promise.resolve(reader) });
    const refused = await check.refused;
    expect(refused).toBeInstanceOf(CoordinatorError);
    expect(refused).toMatchObject({ code: 'RUN_CONFIG_MISMATCH', context: { fields: 'run.strategy.lr' } });
    await check.close();
    expect(reader.closed).toBe(true);
  });

  it('stands by on a journal without the run, and refuses at the next check once the leader has journaled a run it differs from', async () => {
    const records: JournalRecord[] = [];
    const { check, refusal } = await checkedOnce(run(0.5), records);
    expect(refusal()).toBeUndefined();
    records.push(started(run(0.7)));
    check.check();
    await settled();
    expect(refusal()).toMatchObject({ code: 'RUN_CONFIG_MISMATCH' });
    await check.close();
  });

  it('passes a journal whose run it matches', async () => {
    const { check, refusal } = await checkedOnce(run(0.7), [started(run(0.7))]);
    expect(refusal()).toBeUndefined();
    await check.close();
  });

  it('warns once while the journal cannot be read, tries again at each check, and checks once it can', async () => {
    const { logger, warnings } = testLogger({ expect: [/cannot read the journal yet/] });
    let tries = 0;
    const reader = readerOf([started(run(0.7))]);
    const openReader = (): Promise<JournalReader> => (++tries <= 2 ? Promise.reject(new Error('no quorum')) : Promise.resolve(reader));
    const check = startRunCheck({ config: { run: run(0.5) }, logger, openReader });
    await settled();
    check.check();
    await settled();
    expect(warnings()).toHaveLength(1);
    check.check();
    expect(await check.refused).toMatchObject({ code: 'RUN_CONFIG_MISMATCH' });
    expect(tries).toBe(3);
    await check.close();
  });

  it('closes a reader that opens after the check was closed (the standby took over meanwhile)', async () => {
    const reader = readerOf([started(run(0.7))]);
    let open: (r: JournalReader) => void = () => undefined;
    const check = startRunCheck({ config: { run: run(0.5) }, logger: testLogger().logger, openReader: () => new Promise((r) => (open = r)) });
    await check.close();
    open(reader);
    await settled();
    expect(reader.closed).toBe(true);
  });
});
