/**
 * Sites behind an outbound HTTP CONNECT proxy: with `proxy` in their config they join, train and
 * upload through a real proxy started by the test (mTLS runs end to end inside the tunnel), and a
 * proxy that refuses the tunnel leaves a clear error in the agent's log.
 */
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../coordinator/index.js';
import { siteConfigSchema } from '../../site-agent/config.js';
import { proxiedTarget } from '../../site-agent/proxy.js';
import { startConnectProxy, type TestProxy } from '../helpers/connect-proxy.js';
import { createTestFederation, startCoordinatorInProcess, startSiteProcess, waitFor, waitForCommitted, type Proc, type TestFederation } from '../helpers/federation.js';

describe('sites behind an HTTP CONNECT proxy', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let proxy: TestProxy;
  let refusing: TestProxy;
  const procs: Proc[] = [];

  beforeAll(async () => {
    fed = await createTestFederation({ sites: 3, run: { rounds: 1, minSites: 2, expectedSites: ['site-1', 'site-2'], train: { steps: 5, batchSize: 16, lr: 0.01 } } });
    proxy = await startConnectProxy();
    refusing = await startConnectProxy({ status: 407, text: 'Proxy Authentication Required' });
    for (const s of ['site-1', 'site-2']) await fed.patchSiteConfig(s, (cfg) => ({ ...cfg, proxy: proxy.url }));
    await fed.patchSiteConfig('site-3', (cfg) => ({ ...cfg, proxy: refusing.url }));
    coordinator = await startCoordinatorInProcess(fed);
  });

  afterAll(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop();
    await coordinator?.stop();
    await proxy?.close();
    await refusing?.close();
    await fed?.cleanup();
  });

  it('joins, trains and uploads through the proxy, which saw the tunnels to the coordinator', async () => {
    for (const s of ['site-1', 'site-2']) procs.push(await startSiteProcess(fed, s));
    const rounds = await waitForCommitted(fed.admin(), 1, 120_000);
    const round = rounds.rounds.find((r) => r.outcome === 'committed')!;
    expect([...round.participants].sort()).toEqual(['site-1', 'site-2']);
    const coordinatorTarget = `localhost:${fed.port}`;
    expect(proxy.targets.length).toBeGreaterThanOrEqual(2);
    expect(new Set(proxy.targets)).toEqual(new Set([coordinatorTarget]));
    // Two deltas, each about the model's size, went up through the tunnels.
    const { size } = await stat(fed.files.initialModel);
    expect(proxy.bytes.up).toBeGreaterThan(size);
    expect(proxy.bytes.down).toBeGreaterThan(size);
  }, 150_000);

  it('reports a proxy that refuses the tunnel (407) in the agent log, and the site never joins', async () => {
    const site3 = await startSiteProcess(fed, 'site-3');
    procs.push(site3);
    const line = await waitFor('the refusal in the agent log', async () => {
      const text = await site3.logText();
      return text.split('\n').find((l) => /through proxy 127\.0\.0\.1:\d+ with status 407/.test(l));
    }, 30_000);
    expect(line).toContain(`localhost:${fed.port}`);
    expect(refusing.targets[0]).toBe(`localhost:${fed.port}`);
    const sites = (await fed.admin().sites()).sites.map((s) => s.siteId);
    expect(sites).not.toContain('site-3');
  }, 60_000);

  it('refuses a proxy setting that is not an http:// URL with host and port', () => {
    const base = JSON.parse(readFileSync(fed.files.siteConfigs.get('site-1')!, 'utf8')) as Record<string, unknown>;
    for (const bad of ['https://proxy:3128', 'proxy:3128', 'http://proxy:3128/path']) {
      const r = siteConfigSchema.safeParse({ ...base, proxy: bad });
      expect(r.success, bad).toBe(false);
    }
    expect(siteConfigSchema.safeParse({ ...base, proxy: 'http://user:p%40ss@proxy.example.org:3128' }).success).toBe(true);
  });

  it('tunnels to the coordinator by name and passes proxy credentials', () => {
    const t = proxiedTarget('coord.example.org:7443', 'http://user:p%40ss@proxy.example.org:3128');
    expect(t).toEqual({
      target: 'proxy.example.org:3128',
      options: {
        'grpc.http_connect_target': 'dns:///coord.example.org:7443',
        'grpc.enable_http_proxy': 0,
        'grpc.default_authority': 'coord.example.org:7443',
        'grpc.http_connect_creds': 'user:p@ss',
      },
    });
  });
});
