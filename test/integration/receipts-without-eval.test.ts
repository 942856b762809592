/**
 * A run that evaluates nothing still gets every receipt: the contributors of its last round learn
 * that it committed from the coordinator's `finished` task (with `run.evaluate` on they learn it
 * from the final evaluation task), so `audit verify --require-receipts` finds none missing.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyAudit } from '../../coordinator/audit/index.js';
import type { CoordinatorHandle } from '../../coordinator/index.js';
import type { JournalRecord } from '../../coordinator/state/journal.js';
import { createRunner, loadSiteConfig } from '../../site-agent/index.js';
import { journalPath, readJsonLines } from '../helpers/faults.js';
import { createTestFederation, startCoordinatorInProcess, waitFor, waitForCommitted, type TestFederation } from '../helpers/federation.js';
import { startAgentInProcess, type AgentUnderTest } from '../helpers/stand-in-coordinator.js';

const ROUNDS = 2;

describe('receipts of a run with run.evaluate off', () => {
  let fed: TestFederation | undefined;
  let coordinator: CoordinatorHandle | undefined;
  const agents: AgentUnderTest[] = [];
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.stop();
    await coordinator?.stop();
    await fed?.cleanup();
  });

  it('come from every participant of every round, the last one included', async () => {
    fed = await createTestFederation({ sites: 2, run: { rounds: ROUNDS, minSites: 2, evaluate: false, secureAggregation: { enabled: false } } });
    coordinator = await startCoordinatorInProcess(fed);
    for (const site of fed.sites) {
      const runner = createRunner(loadSiteConfig(fed.files.siteConfigs.get(site)!));
      agents.push(startAgentInProcess(fed, site, fed.address, { runner, reconnect: { initialMs: 50, maxMs: 200 } }));
    }
    await waitForCommitted(fed.admin(), ROUNDS, 60_000);
    const f = fed;
    const records = await waitFor(
      'a receipt from each site for each round',
      async () => {
        const r = await readJsonLines<JournalRecord>(journalPath(f));
        return r.filter((x) => x.body.type === 'receipt').length === ROUNDS * 2 ? r : undefined;
      },
      20_000,
    );
    const receipts = records.filter((r) => r.body.type === 'receipt').map((r) => `${String(r.body['round'])}:${String(r.body['site'])}`);
    expect(receipts.sort()).toEqual(['1:site-1', '1:site-2', '2:site-1', '2:site-2']);
    const ca = new X509Certificate(readFileSync(join(fed.dir, 'coordinator', 'ca.crt'), 'utf8'));
    const report = verifyAudit(records.map((record) => ({ ok: true as const, record })), { ca: [ca], requireReceipts: true });
    expect(report).toMatchObject({ ok: true, committedRounds: ROUNDS, missingReceipts: [] });
  }, 90_000);
});
