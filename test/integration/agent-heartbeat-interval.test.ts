/**
 * The agent heartbeats at the interval the coordinator names at `Join` (`heartbeat_interval_ms`),
 * within the bounds it keeps (0.5–60 s), and every 2 s when the coordinator names none: a
 * coordinator of many sites can slow its heartbeats down, and none can make a site hammer it.
 * They go on one `Heartbeats` stream per connection (protocol version 13). A stand-in coordinator
 * over real gRPC and mTLS counts the heartbeats of a real agent.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../../proto/index.js';
import { heartbeatInterval, HEARTBEAT_BOUNDS_MS } from '../../site-agent/agent.js';
import { waitUntil } from '../helpers/wait.js';
import { createTestFederation, type TestFederation } from '../helpers/federation.js';
import { serveSiteStandIn, startAgentInProcess, UNUSED_RUNNER, type AgentUnderTest, type SiteStandIn } from '../helpers/stand-in-coordinator.js';

describe('heartbeat interval', () => {
  let fed: TestFederation | undefined;
  let standIn: SiteStandIn | undefined;
  let agent: AgentUnderTest | undefined;
  afterEach(async () => {
    await agent?.stop();
    standIn?.close();
    await fed?.cleanup();
    agent = standIn = fed = undefined;
  });

  /** Heartbeats a real agent sends in `windowMs` once joined to a coordinator that asks for `askedMs`. */
  async function heartbeatsIn(askedMs: number, windowMs: number): Promise<number> {
    fed = await createTestFederation({ sites: 1 });
    standIn = await serveSiteStandIn(fed, {
      Join: (_call, cb) => cb(null, { federation: 'testfed', siteId: 'site-1', protocolVersion: PROTOCOL_VERSION, heartbeatIntervalMs: askedMs, coordinatorVersion: 'stand-in' }),
      Tasks: () => undefined, // open and quiet: the site is connected and idle
    });
    agent = startAgentInProcess(fed, 'site-1', standIn.address, { runner: UNUSED_RUNNER });
    const deadline = Date.now() + 10_000;
    while ((standIn.calls['Tasks'] ?? 0) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const before = standIn.heartbeats();
    await new Promise((r) => setTimeout(r, windowMs));
    return standIn.heartbeats() - before;
  }

  it('follows the interval the coordinator asks for, on one stream', async () => {
    // 600 ms over 3 s: five heartbeats; the 2 s default would send one or two.
    expect(await heartbeatsIn(600, 3_000)).toBeGreaterThanOrEqual(4);
    // Every heartbeat of the connection went on one Heartbeats stream, none as a call of its own.
    expect(standIn!.calls['Heartbeats']).toBe(1);
    expect(standIn!.calls['Heartbeat']).toBeUndefined();
  });

  it('opens its heartbeat stream again after the coordinator ends it with an error, and cancels it when stopped', async () => {
    fed = await createTestFederation({ sites: 1 });
    let streams = 0;
    let beats = 0;
    let cancelled = 0;
    standIn = await serveSiteStandIn(fed, {
      Join: (_call, cb) => cb(null, { federation: 'testfed', siteId: 'site-1', protocolVersion: PROTOCOL_VERSION, heartbeatIntervalMs: 500, coordinatorVersion: 'stand-in' }),
      Tasks: () => undefined,
      Heartbeats: (call) => {
        const first = ++streams === 1;
        call.on('cancelled', () => cancelled++);
        call.on('data', () => {
          // The first stream fails on its first heartbeat, as a refusal would end it.
          if (first) return void call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'stand-in: first stream refused' });
          beats++;
          call.write({ serverTimeMs: Date.now() });
        });
      },
    });
    agent = startAgentInProcess(fed, 'site-1', standIn.address, { runner: UNUSED_RUNNER });
    await waitUntil('heartbeats on a second stream', () => beats >= 2, 10_000);
    expect(streams).toBe(2);
    await agent.stop();
    agent = undefined;
    await waitUntil('the second stream cancelled', () => cancelled === 1, 5_000);
  });

  it('heartbeats every 2 s when the coordinator names no interval, and never faster than its floor', async () => {
    expect(await heartbeatsIn(0, 3_000)).toBeLessThanOrEqual(2);
    expect(heartbeatInterval(0)).toBe(2_000);
    expect(heartbeatInterval(1)).toBe(HEARTBEAT_BOUNDS_MS.min);
    expect(heartbeatInterval(15_000)).toBe(15_000);
    expect(heartbeatInterval(3_600_000)).toBe(HEARTBEAT_BOUNDS_MS.max);
  });
});
