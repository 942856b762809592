/**
 * An aggregator shard's admissions (coordinator/shards/shard-uploads.ts, issue 22): it takes from a
 * site exactly the header its leader admitted with the shard's part, stripes inside that part;
 * anything else is refused, an upload it holds no admission of is "ask again" (the admission may be
 * on its way), one of an attempt already over is final; verified and refused parts are reported;
 * older rounds' spools go when a newer round is admitted. The gRPC service around it is tested in
 * test/integration/aggregator-shards.test.ts.
 */
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { wireHeader } from '../../helpers/wire-header.js';
import { ShardAdmissions, shardSpools } from '../../../coordinator/shards/shard-uploads.js';
import type { ShardAdmit__Output, ShardReceived, UploadHeader__Output } from '../../../proto/index.js';
import { uploadHeaderFromWire } from '../../../coordinator/service/wire.js';
import { testLogger } from '../../helpers/logger.js';
import { thrownBy } from '../../helpers/thrown.js';

/** A header of a 1,000-value f32 delta (4,000 bytes) of round 2, attempt 0; `patch` changes it. */
function header(patch: Partial<UploadHeader__Output> = {}): UploadHeader__Output {
  const fields = {
    runId: 'run-1',
    round: '2',
    attempt: 0,
    baseModelSha256: 'a'.repeat(64),
    encoding: { name: 'f32' },
    tensors: [{ name: 'w', dtype: 'F32', shape: ['1000'] }],
    totalBytes: '4000',
    samples: '64',
    tokens: '0',
    steps: '10',
    trainLoss: 1.5,
    dataManifestSha256: '',
  };
  return wireHeader(fields, { partEnd: '2000', ...patch });
}

function admit(site: string, h: UploadHeader__Output = header()): ShardAdmit__Output {
  return { siteId: site, header: h, weight: 64, maxChunkBytes: 1 << 20, idleMs: 30_000, maxStreams: 4, windowBytes: String(8 << 20) };
}

function admissions(): { a: ShardAdmissions; reports: Omit<ShardReceived, 'term'>[]; newAttempts: string[] } {
  const reports: Omit<ShardReceived, 'term'>[] = [];
  const newAttempts: string[] = [];
  const a = new ShardAdmissions((r) => reports.push(r), testLogger().logger, (at) => newAttempts.push(`${at.round}.${at.attempt}`));
  return { a, reports, newAttempts };
}

describe("an aggregator shard's admissions", () => {
  it('takes the admitted header with its own stripes inside the part, with the leader’s weight and limits', () => {
    const { a } = admissions();
    a.admit(admit('bsc'));
    const intent = a.checkUpload(uploadHeaderFromWire(header({ stripeOffset: '1000', stripeBytes: '1000', stripeCount: 2, chunkBytes: 512 })), 'bsc');
    expect(intent).toMatchObject({ part: { start: 0, end: 2000 }, stripe: { start: 1000, end: 2000, count: 2 }, weight: 64, chunkBytes: 512, totalBytes: 4000 });
    expect(a.limits()).toEqual({ idleMs: 30_000, maxStreamsPerSite: 4, windowBytes: 8 << 20 });
    expect(a.siteStatus('bsc')).toBe('uploading');
    expect(a.siteStatus('hlrs')).toBeUndefined();
  });

  it('refuses another header, another part or a stripe outside the part; an upload it holds no admission of is asked again, one of an attempt over is final', () => {
    const { a } = admissions();
    a.admit(admit('bsc'));
    expect(thrownBy(() => a.checkUpload(uploadHeaderFromWire(header({ samples: '6400' })), 'bsc'))).toMatchObject({ code: 'UPLOAD_INVALID', message: expect.stringContaining('not the one the coordinator admitted') });
    expect(thrownBy(() => a.checkUpload(uploadHeaderFromWire(header({ partStart: '2000', partEnd: '4000' })), 'bsc'))).toMatchObject({ code: 'UPLOAD_INVALID' });
    expect(thrownBy(() => a.checkUpload(uploadHeaderFromWire(header({ stripeOffset: '1000', stripeBytes: '2000', stripeCount: 2 })), 'bsc'))).toMatchObject({ code: 'CHUNK_OUT_OF_RANGE' });
    expect(thrownBy(() => a.checkUpload(uploadHeaderFromWire(header()), 'hlrs'))).toMatchObject({ code: 'NOT_ADMITTED' });
    expect(thrownBy(() => a.checkUpload(uploadHeaderFromWire(header({ attempt: 1 })), 'bsc'))).toMatchObject({ code: 'NOT_ADMITTED' });
    // A newer attempt admitted: the older one is over, and its admissions are forgotten.
    a.admit(admit('hlrs', header({ attempt: 1 })));
    expect(thrownBy(() => a.checkUpload(uploadHeaderFromWire(header()), 'bsc'))).toMatchObject({ code: 'NOT_INVITED' });
    expect(a.siteStatus('bsc')).toBeUndefined();
  });

  it('drops a site the leader revoked: its admission goes and its open streams end with SITE_REVOKED; the others are untouched', () => {
    const { a } = admissions();
    a.admit(admit('bsc'));
    a.admit(admit('hlrs'));
    const streams = ['bsc', 'hlrs'].map((site) => {
      a.registry.touch(site);
      const c = new AbortController();
      a.registry.get(site)!.uploads.add(c);
      return c;
    });
    a.drop('bsc', 'revoked by admin alice');
    expect(streams[0]!.signal.reason).toMatchObject({ code: 'SITE_REVOKED', message: expect.stringContaining('revoked by admin alice') });
    expect(streams[1]!.signal.aborted).toBe(false);
    expect(thrownBy(() => a.checkUpload(uploadHeaderFromWire(header()), 'bsc'))).toMatchObject({ code: 'NOT_ADMITTED' });
    expect(a.checkUpload(uploadHeaderFromWire(header()), 'hlrs')).toMatchObject({ part: { start: 0, end: 2000 } });
  });

  it('reports a part verified or refused; a newer attempt’s first admission is announced once, an older one’s is ignored', () => {
    const { a, reports, newAttempts } = admissions();
    a.admit(admit('bsc'));
    a.admit(admit('hlrs'));
    const intent = a.checkUpload(uploadHeaderFromWire(header()), 'bsc');
    expect(a.completeUpload('bsc', intent, { path: '/spool/bsc.delta', bytes: 2000, sha256: 'b'.repeat(64) })).toBe(true);
    a.failSite('hlrs', 2, 0, 'NON_FINITE: a NaN at byte 40');
    expect(reports).toEqual([
      { siteId: 'bsc', round: '2', attempt: 0, start: '0', end: '2000', sha256: 'b'.repeat(64), refused: '' },
      { siteId: 'hlrs', round: '2', attempt: 0, start: '0', end: '2000', sha256: '', refused: 'NON_FINITE: a NaN at byte 40' },
    ]);
    expect(a.siteStatus('hlrs')).toBeUndefined();
    a.admit(admit('bsc', header({ round: '3' })));
    a.admit(admit('hlrs', header({ round: '3' })));
    a.admit(admit('cines', header({ round: '2' })));
    expect(newAttempts).toEqual(['2.0', '3.0']);
    expect(a.siteStatus('cines')).toBeUndefined();
  });
});

describe("a shard's spools", () => {
  let dir = '';
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("keep the round being admitted (all its attempts: a named delta may carry over) and delete older rounds'", async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-shard-spools-'));
    const spools = shardSpools(dir);
    for (const [r, at] of [[1, 0], [2, 0], [2, 1], [3, 0]] as const) await spools.spoolDir(r, at);
    await mkdir(join(dir, 'spool', 'not-a-round'));
    await spools.prune({ round: 2, attempt: 1 });
    expect((await readdir(join(dir, 'spool'))).sort()).toEqual(['not-a-round', 'round-2.0', 'round-2.1', 'round-3.0']);
    expect((await spools.spoolAttempts(2)).map((x) => x.attempt).sort()).toEqual([0, 1]);
  });
});
