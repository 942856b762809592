/**
 * The agent follows the coordinator's verdict on a refusal (`fedhpc-retryable` and
 * `fedhpc-error-code` metadata, set by the coordinator's `toServiceError`), not the gRPC status
 * alone: a NOT_JOINED (FAILED_PRECONDITION, retryable) makes it join again, a code the coordinator
 * marks final ends it or its transfer at once. Real gRPC with mTLS against a coordinator stand-in
 * whose refusals are built by the coordinator's own error mapping.
 */
import * as grpc from '@grpc/grpc-js';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CoordinatorError, toServiceError, type CoordinatorErrorCode } from '../../coordinator/core/errors.js';
import { PROTOCOL_VERSION, type Task } from '../../proto/index.js';
import { createSiteClient } from '../../site-agent/client.js';
import { SiteAgentError } from '../../site-agent/errors.js';
import { downloadModel } from '../../site-agent/download.js';
import { createTestFederation, type TestFederation } from '../helpers/federation.js';
import { siteCertFiles } from '../helpers/raw-site.js';
import { serveSiteStandIn, startAgentInProcess, UNUSED_RUNNER, WARN, type AgentUnderTest, type SiteStandIn } from '../helpers/stand-in-coordinator.js';
import { waitUntil } from '../helpers/wait.js';

const MODEL = randomBytes(4096);
const SHA = createHash('sha256').update(MODEL).digest('hex');
const JOINED = { federation: 'testfed', siteId: 'site-1', protocolVersion: PROTOCOL_VERSION, heartbeatIntervalMs: 2_000, coordinatorVersion: 'stand-in' };
const FAST = { initialMs: 10, maxMs: 100 };

const refusal = (code: CoordinatorErrorCode, message: string): ReturnType<typeof toServiceError> => toServiceError(new CoordinatorError(code, message));

const TRAIN: Task = {
  train: { runId: 'run-v', round: 1, attempt: 1, globalModel: { sha256: SHA, sizeBytes: MODEL.length }, modelRound: 0, tensors: [], trainConfigJson: '{}', encoding: { name: 'f32' } },
};

describe('the agent follows the coordinator\'s verdict on a refusal', () => {
  let fed: TestFederation;
  let standIn: SiteStandIn | undefined;
  let agent: AgentUnderTest | undefined;

  beforeEach(async () => {
    fed = await createTestFederation({ sites: 1 });
  });
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    standIn?.close();
    standIn = undefined;
    await fed.cleanup();
  });

  it('joins again when the round\'s download is answered NOT_JOINED, instead of failing the round', async () => {
    let streams = 0;
    standIn = await serveSiteStandIn(fed, {
      Join: (_call, cb) => cb(null, JOINED),
      // The first stream carries a round; the coordinator then "forgets" the session (as one
      // restarted between Join and Download would), and later streams stay quiet.
      Tasks: (call) => void (++streams === 1 && call.write(TRAIN)),
      Download: (call) => void call.emit('error', refusal('NOT_JOINED', 'site site-1 must call Join first')),
      ReportFailure: (_call, cb) => cb(null, {}),
    });
    agent = startAgentInProcess(fed, 'site-1', standIn.address, { runner: UNUSED_RUNNER, reconnect: FAST });
    await waitUntil('a second Join', () => (standIn!.calls['Join'] ?? 0) >= 2, 10_000);
    await waitUntil('a second task stream', () => streams >= 2, 5_000);
    expect(standIn.calls['Download']).toBe(1);
    // The round was not reported failed: the coordinator, once it knows the site again, decides.
    expect(standIn.calls['ReportFailure']).toBeUndefined();
    expect(agent.logs.some((l) => l.level === WARN && /joining again/.test(l.msg))).toBe(true);
    expect(agent.outcome()).toBeUndefined();
  });

  it('keeps reconnecting while the task stream is answered NOT_JOINED (a guard: this already held)', async () => {
    standIn = await serveSiteStandIn(fed, {
      Join: (_call, cb) => cb(null, JOINED),
      Tasks: (call) => void call.emit('error', refusal('NOT_JOINED', 'site site-1 must call Join first')),
    });
    agent = startAgentInProcess(fed, 'site-1', standIn.address, { runner: UNUSED_RUNNER, reconnect: FAST });
    await waitUntil('three joins', () => (standIn!.calls['Join'] ?? 0) >= 3, 10_000);
    expect(agent.outcome()).toBeUndefined();
  });

  it('stops with REFUSED at the first Join refused with a code the coordinator marks final (BAD_REQUEST)', async () => {
    standIn = await serveSiteStandIn(fed, {
      Join: (_call, cb) => cb(refusal('BAD_REQUEST', 'agent version must be at most 64 printable ASCII characters')),
    });
    agent = startAgentInProcess(fed, 'site-1', standIn.address, { runner: UNUSED_RUNNER, reconnect: FAST });
    await waitUntil('the agent to stop', () => agent!.outcome() !== undefined, 5_000);
    const err = agent.outcome();
    expect(err).toBeInstanceOf(SiteAgentError);
    expect((err as SiteAgentError).code).toBe('REFUSED');
    expect((err as SiteAgentError).retryable).toBe(false);
    expect((err as Error).message).toContain('BAD_REQUEST: agent version must be');
    expect(standIn.calls['Join']).toBe(1);
  });

  it('fails a download at once when the coordinator marks its refusal final on a status once retried (STATE_CORRUPT, INTERNAL)', async () => {
    standIn = await serveSiteStandIn(fed, {
      Download: (call) => void call.emit('error', refusal('STATE_CORRUPT', 'model store unreadable')),
    });
    const client = createSiteClient({ coordinator: standIn.address, tls: siteCertFiles(fed, 'site-1') });
    const t0 = Date.now();
    try {
      const got = downloadModel(client, { sha256: SHA, sizeBytes: MODEL.length }, { cacheDir: join(fed.dir, 'cache'), signal: new AbortController().signal, onProgress: () => undefined, policy: { idleMs: 3_000, retry: { initialMs: 20, maxMs: 100 } } });
      await expect(got).rejects.toMatchObject({ code: grpc.status.INTERNAL, details: 'STATE_CORRUPT: model store unreadable' });
    } finally {
      client.close();
    }
    expect(standIn.calls['Download']).toBe(1);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });
});
