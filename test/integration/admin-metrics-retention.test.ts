/**
 * Prometheus endpoints scraped during a real federation (coordinator and agent), and checkpoint
 * retention over a whole run: the last K and every Nth kept, the state dir's size in `status`.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCoordinatorConfig, type AdminClient } from '../../coordinator/index.js';
import { createTestFederation, freePort, startCoordinatorProcess, startSiteProcess, waitFor, waitForCommitted, type Proc, type TestFederation } from '../helpers/federation.js';

/** The value of one sample line (`name{labels} value`) whose text contains every fragment. */
function sample(text: string, name: string, ...fragments: string[]): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(name) && (l[name.length] === '{' || l[name.length] === ' ') && fragments.every((f) => l.includes(f)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('metrics endpoints and checkpoint retention', () => {
  let fed: TestFederation;
  let admin: AdminClient;
  let coordinatorPort: number;
  let sitePort: number;
  const procs: Proc[] = [];
  const stateDir = () => join(fed.member('coordinator'), 'state');

  beforeAll(async () => {
    fed = await createTestFederation({
      sites: 2,
      run: { rounds: 7, minSites: 2, train: { steps: 10, batchSize: 16, lr: 0.01 }, secureAggregation: { enabled: false } },
    });
    coordinatorPort = await freePort();
    sitePort = await freePort();
    await fed.patchCoordinatorConfig((cfg) => ({ ...cfg, retention: { keepLast: 2, keepEvery: 3 }, metrics: { port: coordinatorPort } }));
    await fed.patchSiteConfig('site-1', (c) => ({ ...c, metrics: { port: sitePort } }));
    procs.push(await startCoordinatorProcess(fed));
    for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
    admin = fed.admin();
  });
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await fed?.cleanup();
  });

  it('binds the endpoints to 127.0.0.1 unless told otherwise', () => {
    expect(loadCoordinatorConfig(fed.files.coordinatorConfig).metrics).toEqual({ port: coordinatorPort, host: '127.0.0.1' });
  });

  it('serves rounds, phase durations, bytes, streams, liveness and errors while the federation runs', async () => {
    await waitForCommitted(admin, 1);
    await admin.round(99).catch(() => undefined); // one BAD_REQUEST, counted by code
    const text = await (await fetch(`http://127.0.0.1:${coordinatorPort}/metrics`)).text();
    expect(sample(text, 'fedhpc_rounds_total', 'outcome="committed"')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'fedhpc_rounds_total', 'outcome="aborted"')).toBe(0);
    expect(sample(text, 'fedhpc_phase_duration_seconds_count', 'phase="training"')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'fedhpc_bytes_total', 'direction="up"')).toBeGreaterThan(0);
    expect(sample(text, 'fedhpc_bytes_total', 'direction="down"')).toBeGreaterThan(0);
    expect(sample(text, 'fedhpc_active_streams', 'method="Tasks"')).toBe(2);
    expect(sample(text, 'fedhpc_site_heartbeat_age_seconds', 'site="site-1"', 'connected="true"')).toBeLessThan(10);
    expect(sample(text, 'fedhpc_errors_total', 'status="INVALID_ARGUMENT"', 'code="BAD_REQUEST"')).toBe(1);
    expect(text).toContain('federation="testfed"');
    expect((await fetch(`http://127.0.0.1:${coordinatorPort}/other`)).status).toBe(404);

    // The agent counts a round it trained once its upload call has returned, which a loaded machine
    // can put after the coordinator's commit.
    const agent = await waitFor('site-1 counting its trained round', async () => {
      const text = await (await fetch(`http://127.0.0.1:${sitePort}/metrics`)).text();
      return (sample(text, 'fedhpc_agent_rounds_trained_total') ?? 0) >= 1 ? text : undefined;
    }, 30_000);
    expect(sample(agent, 'fedhpc_agent_connected', 'site="site-1"')).toBe(1);
    expect(sample(agent, 'fedhpc_agent_bytes_total', 'direction="up"')).toBeGreaterThan(0);
    expect(sample(agent, 'fedhpc_agent_last_contact_age_seconds')).toBeLessThan(10);
  }, 120_000);

  it('keeps the last 2 and every 3rd checkpoint, never the current one, and reports the state dir size', async () => {
    const rounds = await waitForCommitted(admin, 7, 120_000);
    // Retention runs after a commit is journaled (which `rounds` reads) and before the run moves
    // on, so the state dir is settled only once the run has finished.
    await waitFor('the run to finish', async () => ((await admin.status()).runState === 'finished' ? true : undefined), 30_000);
    const byRound = new Map(rounds.rounds.filter((r) => r.outcome === 'committed').map((r) => [Number(r.round), r.modelSha256]));
    const journal = (await readFile(join(stateDir(), 'journal.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { body: Record<string, unknown> }).body);
    const initial = String(journal.find((b) => b['type'] === 'run-started')!['initialModelSha256']);
    const models = (await readdir(join(stateDir(), 'models'))).map((f) => f.replace('.safetensors', '')).sort();
    expect(models).toEqual([initial, byRound.get(3), byRound.get(6), byRound.get(7)].sort());
    const optimizer = await readdir(join(stateDir(), 'optimizer'));
    expect(optimizer.every((f) => models.includes(f.split('.')[0]!))).toBe(true);
    expect(optimizer.some((f) => f.startsWith(byRound.get(7)!))).toBe(true);

    const status = await admin.status();
    let modelBytes = 0;
    for (const m of models) modelBytes += (await stat(join(stateDir(), 'models', `${m}.safetensors`))).size;
    expect(Number(status.stateDirBytes)).toBeGreaterThan(modelBytes);
  }, 150_000);
});
