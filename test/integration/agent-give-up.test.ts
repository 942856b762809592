/**
 * An agent told to give up (`giveUpAfterS`) when it cannot reach its coordinator stops on time —
 * its backoff never sleeps past the give-up point — and names the address it could not reach.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createTestFederation, startSiteProcess, type Proc, type TestFederation } from '../helpers/federation.js';

describe('an agent that cannot reach its coordinator', () => {
  let fed: TestFederation | undefined;
  const procs: Proc[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
  });

  it('gives up after giveUpAfterS, not a backoff later, and names the unresolvable address', async () => {
    fed = await createTestFederation({ sites: 1, run: { rounds: 1, minSites: 1 } });
    // A long backoff: without the cap the agent would sleep well past its give-up point.
    await fed.patchSiteConfig('site-1', (c) => ({ ...c, coordinator: 'no-such-coordinator.invalid:7443', giveUpAfterS: 3, reconnect: { initialMs: 30_000, maxMs: 60_000 } }));
    const t0 = Date.now();
    const site = await startSiteProcess(fed, 'site-1');
    procs.push(site);
    const code = await Promise.race([site.exited, new Promise((r) => setTimeout(() => r('still running'), 20_000))]);
    expect(code).toBe(1);
    // 3 s of trying plus the agent's start-up, which a loaded machine can stretch to several
    // seconds; well short of the 30 s backoff it would have slept without the cap.
    expect((Date.now() - t0) / 1000).toBeLessThan(15);
    const log = await site.logText();
    expect(log).toContain('UNREACHABLE');
    expect(log).toContain('no-such-coordinator.invalid:7443');
  }, 40_000);
});
