/**
 * The coordinator's metrics listener as an operator's Prometheus and orchestrator see it, during a
 * real federation (coordinator and agents as processes): the run view (run, round, phase, sites,
 * bytes, uploads, evaluation), Node's process metrics and the exposition's content type; and
 * `grpc.health.v1` over cleartext HTTP/2 on the same port, for a probe without a client certificate.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdminClient } from '../../coordinator/index.js';
import { createTestFederation, freePort, startCoordinatorProcess, startSiteProcess, waitFor, waitForCommitted, type Proc, type TestFederation } from '../helpers/federation.js';

/** Every sample line of `name` (exactly that family member), with its labels and value. */
function samples(text: string, name: string): { labels: string; value: number }[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(name) && (l[name.length] === '{' || l[name.length] === ' '))
    .map((l) => ({ labels: l.slice(name.length, l.lastIndexOf(' ')), value: Number(l.slice(l.lastIndexOf(' ') + 1)) }));
}
const value = (text: string, name: string, ...fragments: string[]): number | undefined => samples(text, name).find((s) => fragments.every((f) => s.labels.includes(f)))?.value;

/** A `grpc.health.v1.Health/Check` over cleartext HTTP/2, no certificate; resolves with the status byte. */
function plainHealthCheck(port: number, service: string, path = '/grpc.health.v1.Health/Check'): Promise<number> {
  const Client = grpc.makeGenericClientConstructor({}, 'Probe');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  // HealthCheckRequest{service}: field 1, a string; the answer's status is field 1, a varint.
  const request = Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(service)]), Buffer.from(service)]);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, request, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err, res?: Buffer) => {
      client.close();
      if (err || res === undefined) reject(err ?? new Error('no answer'));
      else resolve(res.length >= 2 && res[0] === 0x08 ? res[1]! : 0);
    });
  });
}
const SERVING = 1;
const ROUNDS = 20;

describe('coordinator metrics listener: run view and health for probes', () => {
  let fed: TestFederation;
  let admin: AdminClient;
  let port: number;
  const procs: Proc[] = [];
  const scrape = async (): Promise<{ text: string; type: string | null }> => {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    return { text: await res.text(), type: res.headers.get('content-type') };
  };

  beforeAll(async () => {
    // The run must still be going when the view is read after round 1, with an upload in flight:
    // more rounds than the test sees (it is stopped, not finished), and site-2's ~80 KB delta
    // throttled to a few seconds a round (unthrottled an upload lasted some 20 ms, and the 50 ms
    // poll could miss every one of the few rounds left on a loaded machine).
    fed = await createTestFederation({
      sites: 2,
      run: { rounds: ROUNDS, minSites: 2, train: { steps: 10, batchSize: 16, lr: 0.01 }, secureAggregation: { enabled: false } },
    });
    await fed.patchSiteConfig('site-2', (c) => ({ ...c, transfer: { uploadRateBytesPerS: 32_000, chunkBytes: 4096 } }));
    port = await freePort();
    await fed.patchCoordinatorConfig((cfg) => ({ ...cfg, metrics: { port } }));
    procs.push(await startCoordinatorProcess(fed));
    for (const s of fed.sites) procs.push(await startSiteProcess(fed, s));
    admin = fed.admin();
  }, 60_000);
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await fed?.cleanup();
  });

  it('answers a plain grpc.health.v1 check (no client certificate) with SERVING, and serves no fedhpc service there', { timeout: 60_000 }, async () => {
    const status = await waitFor('the health check on the metrics port', () => plainHealthCheck(port, ''), 30_000);
    expect(status).toBe(SERVING);
    expect(await plainHealthCheck(port, 'fedhpc.v1.SiteService')).toBe(SERVING);
    const refused = await plainHealthCheck(port, '', '/fedhpc.v1.AdminService/Status').then(
      () => undefined,
      (err: grpc.ServiceError) => err.code,
    );
    expect(refused).toBe(grpc.status.UNIMPLEMENTED);
    // The same port still answers Prometheus over HTTP/1.1.
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
  });

  it('serves the run, round and phase, per-site state and bytes, uploads and eval loss, with the versioned content type', async () => {
    await waitForCommitted(admin, 1);
    const first = await scrape();
    expect(first.type).toBe('text/plain; version=0.0.4; charset=utf-8');
    const t = first.text;
    expect(value(t, 'fedhpc_run_info', 'run_id="test-run"', 'state="running"')).toBe(1);
    expect(value(t, 'fedhpc_run_rounds', 'kind="planned"')).toBe(ROUNDS);
    expect(value(t, 'fedhpc_run_rounds', 'kind="committed"')).toBeGreaterThanOrEqual(1);
    expect(value(t, 'fedhpc_round')).toBeGreaterThanOrEqual(1);
    expect(value(t, 'fedhpc_round_attempt')).toBeGreaterThanOrEqual(0);
    const phases = samples(t, 'fedhpc_round_phase');
    expect(phases.map((p) => /phase="([a-z]+)"/.exec(p.labels)?.[1]).sort()).toEqual(['aggregate', 'commit', 'keys', 'open', 'shares', 'training', 'unmask', 'upload']);
    expect(phases.filter((p) => p.value === 1).length).toBeLessThanOrEqual(1);
    expect(samples(t, 'fedhpc_round_phase_deadline_timestamp_seconds')).toHaveLength(1);
    for (const site of fed.sites) {
      expect(value(t, 'fedhpc_site_connected', `site="${site}"`)).toBe(1);
      expect(samples(t, 'fedhpc_site_activity').filter((s) => s.labels.includes(`site="${site}"`))).toHaveLength(1);
      expect(value(t, 'fedhpc_site_progress_ratio', `site="${site}"`)).toBeDefined();
      expect(value(t, 'fedhpc_site_bytes_total', `site="${site}"`, 'direction="up"')).toBeGreaterThan(0);
      expect(value(t, 'fedhpc_site_bytes_total', `site="${site}"`, 'direction="down"')).toBeGreaterThan(0);
      expect(value(t, 'fedhpc_site_rounds_contributed', `site="${site}"`)).toBeGreaterThanOrEqual(1);
    }
    // Node's default process metrics, under prom-client's standard names.
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(samples(t, name).length, name).toBeGreaterThan(0);
    }
    expect(t).toContain('federation="testfed"');

    // Uploads of an open attempt as received, and the latest evaluation, appear as the run goes on.
    const uploads = await waitFor('an upload in the run view', async () => {
      const s = samples((await scrape()).text, 'fedhpc_upload_received_bytes').filter((x) => x.value > 0);
      return s.length > 0 ? s : undefined;
    }, 60_000, 50);
    expect(uploads[0]!.labels).toMatch(/site="site-[12]"/);
    const evaluated = await waitFor('an evaluation in the run view', async () => {
      const text = (await scrape()).text;
      return (value(text, 'fedhpc_eval_samples') ?? 0) > 0 ? text : undefined;
    }, 60_000);
    expect(value(evaluated, 'fedhpc_eval_loss')).toBeGreaterThan(0);
    expect(value(evaluated, 'fedhpc_eval_model_round')).toBeGreaterThanOrEqual(0);
    expect(samples(evaluated, 'fedhpc_site_eval_loss').length).toBeGreaterThanOrEqual(1);
  }, 150_000);
});
