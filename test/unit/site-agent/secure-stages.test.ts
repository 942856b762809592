/**
 * The site's secure-aggregation stages (site-agent/secure/stages.ts) over a recorded link: three
 * sites taken through keys, shares, the consistency check and unmasking hold their attempt's
 * secrets until they reveal; a stage without keys, or one the coordinator refuses, is reported as
 * this site's failure, except when the coordinator forgot the session (the agent joins again).
 */
import * as grpc from '@grpc/grpc-js';
import { beforeAll, describe, expect, it } from 'vitest';
import type { KeysAdvertisement, SecureLink } from '../../../site-agent/link.js';
import { classifyFailure, VERDICT_METADATA } from '../../../site-agent/retry.js';
import { SecureStages } from '../../../site-agent/secure/stages.js';
import type { SecureParams, WireShare } from '../../../site-agent/secure/session.js';
import type { AttemptRef } from '../../../site-agent/wire.js';
import { testLogger } from '../../helpers/logger.js';
import { makeIdentities, type Identities } from '../../helpers/secure-protocol.js';

const SITES = ['site-a', 'site-b', 'site-c'];
const ATTEMPT: AttemptRef = { runId: 'run-s', round: 4, attempt: 1 };
const PARAMS: SecureParams = { threshold: 2, quantBits: 16, modulusBits: 32, clip: 1, maxSiteWeight: 100, weighting: 'samples', graphSeed: new Uint8Array(32), degree: 0, roster: SITES };

let ids: Identities;
beforeAll(async () => {
  ids = await makeIdentities(SITES);
});

/** A link that records what the stages send, and fails a call when told to. */
class RecordedLink implements SecureLink {
  readonly sent: { call: string; attempt: AttemptRef; body: unknown }[] = [];
  failWith: Error | undefined;

  private record(call: string, attempt: AttemptRef, body: unknown): Promise<void> {
    if (this.failWith) return Promise.reject(this.failWith);
    this.sent.push({ call, attempt: { runId: attempt.runId, round: attempt.round, attempt: attempt.attempt }, body });
    return Promise.resolve();
  }

  advertiseKeys: SecureLink['advertiseKeys'] = (a, ad) => this.record('advertiseKeys', a, ad);
  submitShares: SecureLink['submitShares'] = (a, shares) => this.record('submitShares', a, shares);
  signSurvivors: SecureLink['signSurvivors'] = (a, site, signature) => this.record('signSurvivors', a, { site, signature });
  revealShares: SecureLink['revealShares'] = (a, shares) => this.record('revealShares', a, shares);
  reportFailure: SecureLink['reportFailure'] = (a, f) => void this.sent.push({ call: 'reportFailure', attempt: a, body: f });

  last(call: string): unknown {
    return this.sent.filter((s) => s.call === call).at(-1)?.body;
  }
}

interface Site {
  readonly stages: SecureStages;
  readonly link: RecordedLink;
  /** What the agent was asked to join again for. */
  readonly rejoins: readonly string[];
  attemptsDone(): number;
}

/** Site `id`'s stages, joining again (as the agent does) on the verdicts site-agent/retry.ts says so for. */
function site(id: string, o: { expect?: RegExp[] } = {}): Site {
  const identity = ids.sites.get(id);
  if (!identity) throw new Error(`no identity for ${id}`);
  const link = new RecordedLink();
  const rejoins: string[] = [];
  let done = 0;
  const stages = new SecureStages({
    site: id,
    log: testLogger({ expect: o.expect }).logger,
    link: () => link,
    tls: () => ({ key: identity.keyPem, ca: ids.caPem }),
    readCertificate: () => identity.certPem,
    fault: () => undefined,
    rejoinIfForgotten: (err, during) => classifyFailure(err).rejoin && rejoins.push(during) > 0,
    onAttemptDone: () => void done++,
  });
  return { stages, link, rejoins, attemptsDone: () => done };
}

/** A refusal of the coordinator, with its verdict in the metadata as coordinator/errors.ts sends it. */
function refusal(status: grpc.status, code: string, retryable: boolean, message: string): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  metadata.set(VERDICT_METADATA.code, code);
  metadata.set(VERDICT_METADATA.retryable, String(retryable));
  return Object.assign(new Error(message), { code: status, details: message, metadata });
}

describe('the secure stages of a site', () => {
  it('take three sites from keys to unmasking, holding each attempt\'s secrets until it reveals', async () => {
    const sites = new Map(SITES.map((id) => [id, site(id)]));
    for (const s of sites.values()) await s.stages.run({ kind: 'keys', ...ATTEMPT, params: PARAMS });
    for (const s of sites.values()) expect(s.stages.active).toBe(true);
    const advertisements = [...sites.values()].map((s) => {
      const ad = s.link.last('advertiseKeys') as KeysAdvertisement;
      return { site: ad.siteId, cPk: ad.cPk, sPk: ad.sPk, signature: ad.signature, certificatePem: ad.certificatePem };
    });
    for (const s of sites.values()) await s.stages.run({ kind: 'shares', ...ATTEMPT, advertisements });
    const shares = [...sites.values()].flatMap((s) => s.link.last('submitShares') as WireShare[]);
    // What the round job does before training (round 2): each site opens the shares sealed for it.
    for (const [id, s] of sites) s.stages.session(ATTEMPT).session.receiveShares(shares.filter((x) => x.to === id), SITES);
    for (const s of sites.values()) await s.stages.run({ kind: 'consistency', ...ATTEMPT, survivors: SITES, dropped: [] });
    const signatures = [...sites.values()].map((s) => s.link.last('signSurvivors') as { site: string; signature: Uint8Array });
    for (const s of sites.values()) await s.stages.run({ kind: 'unmask', ...ATTEMPT, survivors: SITES, dropped: [], signatures });

    for (const s of sites.values()) {
      expect(s.link.sent.map((x) => x.call)).toEqual(['advertiseKeys', 'submitShares', 'signSurvivors', 'revealShares']);
      expect(s.link.sent.every((x) => x.attempt.round === 4 && x.attempt.attempt === 1)).toBe(true);
      expect((s.link.last('revealShares') as unknown[]).length).toBe(SITES.length);
      expect(s.stages.active).toBe(false);
      expect(s.attemptsDone()).toBe(1);
    }
  });

  it('report a stage of an attempt whose keys were never made here as this site\'s REFUSED failure', async () => {
    const s = site('site-a', { expect: [/secure aggregation step failed/] });
    await s.stages.run({ kind: 'consistency', ...ATTEMPT, survivors: SITES, dropped: [] });
    expect(s.link.sent).toEqual([
      { call: 'reportFailure', attempt: expect.objectContaining(ATTEMPT) as unknown, body: { code: 'REFUSED', message: 'no secure session for run-s/4.1 (keys were never made here)', retryable: false } },
    ]);
  });

  it('forget an attempt the coordinator cancelled', async () => {
    const s = site('site-b');
    await s.stages.run({ kind: 'keys', ...ATTEMPT, params: PARAMS });
    s.stages.cancel({ ...ATTEMPT, attempt: 2 });
    expect(s.stages.active).toBe(true);
    s.stages.cancel(ATTEMPT);
    expect(s.stages.active).toBe(false);
    expect(() => s.stages.session(ATTEMPT)).toThrow(expect.objectContaining({ code: 'REFUSED' }) as Error);
  });

  it('join again instead of reporting when the coordinator answers NOT_JOINED', async () => {
    const s = site('site-c');
    s.link.failWith = refusal(grpc.status.FAILED_PRECONDITION, 'NOT_JOINED', true, 'unknown session');
    await s.stages.run({ kind: 'keys', ...ATTEMPT, params: PARAMS });
    expect(s.rejoins).toEqual(['secure aggregation step of round 4']);
    expect(s.link.sent).toEqual([]);
  });

  it('report a call the coordinator refuses for good as SECURE_STEP_FAILED', async () => {
    const s = site('site-a', { expect: [/secure aggregation step failed/] });
    s.link.failWith = refusal(grpc.status.FAILED_PRECONDITION, 'STAGE_CLOSED', false, 'stage closed');
    await s.stages.run({ kind: 'keys', ...ATTEMPT, params: PARAMS });
    expect(s.rejoins).toEqual([]);
    expect(s.link.sent).toEqual([{ call: 'reportFailure', attempt: expect.objectContaining(ATTEMPT) as unknown, body: { code: 'SECURE_STEP_FAILED', message: 'stage closed', retryable: false } }]);
  });
});
