/**
 * An agent whose Join keeps failing reconnects again and again; each attempt must leave nothing
 * behind on its lifetime signal. An abort listener left per Join was a slow leak, and Node warned
 * (MaxListenersExceededWarning) after ten reconnects.
 */
import * as grpc from '@grpc/grpc-js';
import { getEventListeners } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestFederation, type TestFederation } from '../helpers/federation.js';
import { serveSiteStandIn, startAgentInProcess, UNUSED_RUNNER, type AgentUnderTest, type SiteStandIn } from '../helpers/stand-in-coordinator.js';
import { waitUntil } from '../helpers/wait.js';

describe('an agent reconnecting after failed joins', () => {
  let fed: TestFederation;
  let standIn: SiteStandIn | undefined;
  let agent: AgentUnderTest | undefined;
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => void warnings.push(w);

  beforeEach(async () => {
    fed = await createTestFederation({ sites: 1 });
    warnings.length = 0;
    process.on('warning', onWarning);
  });
  afterEach(async () => {
    process.off('warning', onWarning);
    await agent?.stop();
    standIn?.close();
    await fed.cleanup();
  });

  it('keeps at most one abort listener on its lifetime signal over 15 refused joins, and Node never warns', async () => {
    standIn = await serveSiteStandIn(fed, {
      Join: (_call, cb) => cb({ code: grpc.status.UNAVAILABLE, details: 'coordinator overloaded (test)' }),
    });
    agent = startAgentInProcess(fed, 'site-1', standIn.address, { runner: UNUSED_RUNNER, reconnect: { initialMs: 10, maxMs: 100 } });
    const signal = agent.signal;
    let most = 0;
    const sampler = setInterval(() => (most = Math.max(most, getEventListeners(signal, 'abort').length)), 5);
    try {
      await waitUntil('15 joins', () => (standIn!.calls['Join'] ?? 0) >= 15, 20_000);
    } finally {
      clearInterval(sampler);
    }
    // Node emits its warning on a later tick.
    await new Promise((r) => setImmediate(r));
    most = Math.max(most, getEventListeners(signal, 'abort').length);
    expect(most).toBeLessThanOrEqual(1);
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message)).toEqual([]);
    // Still trying: a refusal that a retry can fix never ends the agent.
    expect(agent.outcome()).toBeUndefined();
  });
});
