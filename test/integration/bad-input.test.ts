/**
 * Bad input at every door of the coordinator: foreign or borrowed certificates, the wrong API for
 * a role, another protocol version, uploads that break the contract, late uploads, and config files
 * with typos. Each gets a precise gRPC status and fedhpc error code; the offender is refused or
 * dropped, and a round in progress completes with the sites that behaved.
 */
import * as grpc from '@grpc/grpc-js';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../common/config-file.js';
import { AdminClient, loadCoordinatorConfig, type AdminEvent, type CoordinatorHandle } from '../../coordinator/index.js';
import { createCa, issueCertificate } from '../../coordinator/pki/index.js';
import { PROTOCOL_VERSION, type DownloadAdmission__Output, type ModelChunk__Output, type RoundInfo__Output, type TrainTask__Output, type UploadMessage } from '../../proto/index.js';
import { loadSiteConfig } from '../../site-agent/index.js';
import { expectLogs } from '../helpers/logger.js';
import {
  createTestFederation,
  startCoordinatorInProcess,
  startCoordinatorProcess,
  startSiteProcess,
  waitFor,
  type Proc,
  type TestFederation,
} from '../helpers/federation.js';
import {
  RawSiteClient,
  adminCertFiles,
  chunkMessages,
  craftDelta,
  deltaBytes,
  headerFor,
  refusal,
  sha256Hex,
  joinedRawSite,
  siteCertFiles,
  validUpload,
  type CertFiles,
  type TaskStream,
} from '../helpers/raw-site.js';

const ERROR_CODE_KEY = 'fedhpc-error-code';

async function knownSites(admin: AdminClient): Promise<string[]> {
  return (await admin.sites()).sites.map((s) => s.siteId);
}

describe('refusals at the door (identity, role, protocol, order of calls)', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let admin: AdminClient;
  const clients: { close(): void }[] = [];
  const rawSite = (files: CertFiles): RawSiteClient => {
    const c = new RawSiteClient({ address: fed.address, files });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    fed = await createTestFederation({ sites: 4, run: { rounds: 1 } });
    coordinator = await startCoordinatorInProcess(fed);
    admin = fed.admin();
    await admin.waitForReady(Date.now() + 15_000);
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(async () => {
    await coordinator?.stop();
    await fed?.cleanup();
  });

  it('refuses at the TLS handshake a client certificate issued by another CA, and registers nothing', async () => {
    expectLogs(/^caller refused$/);
    const now = new Date();
    const otherCa = await createCa({ federation: 'testfed', validityDays: 1, now });
    const forged = await issueCertificate({ ca: otherCa, role: 'site', id: 'site-1', federation: 'testfed', validityDays: 1, now });
    const dir = join(fed.dir, 'foreign');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'site.crt'), forged.certPem);
    await writeFile(join(dir, 'site.key'), forged.keyPem!, { mode: 0o600 });
    // Trusts the real coordinator (the admin client reaches it with the same CA file), presents a
    // certificate the federation CA never signed: only the client certificate differs.
    const client = rawSite({ ca: siteCertFiles(fed, 'site-1').ca, cert: join(dir, 'site.crt'), key: join(dir, 'site.key') });

    const r = refusal(await client.join({ siteId: 'site-1' }));
    expect(r.code).toBe(grpc.status.UNAVAILABLE);
    // Refused before any handler ran: no fedhpc error code, and the site is unknown.
    expect(r.fedhpcCode).toBeUndefined();
    expect(await knownSites(admin)).not.toContain('site-1');
  });

  it("refuses a site that presents site-1's certificate but claims to be site-2", async () => {
    const client = rawSite(siteCertFiles(fed, 'site-1'));
    const r = refusal(await client.join({ siteId: 'site-2' }));
    expect(r.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.fedhpcCode).toBe('SITE_MISMATCH');
    expect(r.details).toContain('site-1');
    expect(r.details).toContain('site-2');
    const known = await knownSites(admin);
    expect(known).not.toContain('site-1');
    expect(known).not.toContain('site-2');
  });

  it('refuses an admin certificate on SiteService.Join', async () => {
    const client = rawSite(adminCertFiles(fed));
    const r = refusal(await client.join({ siteId: 'admin' }));
    expect(r.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.fedhpcCode).toBe('PERMISSION_DENIED');
    expect(r.details).toMatch(/admin certificate cannot call the site API/);
    expect(await knownSites(admin)).not.toContain('admin');
  });

  it('refuses a site certificate on AdminService.Status', async () => {
    const asSite = new AdminClient({ coordinator: fed.address, tls: siteCertFiles(fed, 'site-4') });
    clients.push(asSite);
    const err = (await asSite.status().then(
      () => undefined,
      (e: unknown) => e,
    )) as grpc.ServiceError | undefined;
    expect(err).toBeDefined();
    expect(err!.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err!.metadata.get(ERROR_CODE_KEY)).toEqual(['PERMISSION_DENIED']);
    expect(err!.details).toMatch(/site certificate cannot call the admin API/);
  });

  it('refuses an agent that speaks another protocol version, naming both versions', async () => {
    const client = rawSite(siteCertFiles(fed, 'site-3'));
    const other = PROTOCOL_VERSION + 1;
    const r = refusal(await client.join({ siteId: 'site-3', protocolVersion: other }));
    expect(r.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(r.fedhpcCode).toBe('PROTOCOL_VERSION');
    expect(r.details).toMatch(new RegExp(`protocol version ${other}\\b`));
    expect(r.details).toMatch(new RegExp(`version ${PROTOCOL_VERSION}\\b`));
    expect(await knownSites(admin)).not.toContain('site-3');
  });

  it('refuses an upload from a site that has not joined', async () => {
    const client = rawSite(siteCertFiles(fed, 'site-4'));
    const header = { runId: 'test-run', round: 1, attempt: 0, encoding: { name: 'f32' }, totalBytes: 4, samples: 1 };
    const r = refusal(await client.upload([{ header }, { chunk: { offset: 0, data: Buffer.alloc(4) } }, { trailer: { sha256: sha256Hex(Buffer.alloc(4)) } }]));
    expect(r.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(r.fedhpcCode).toBe('NOT_JOINED');
    expect(r.details).toContain('site-4');
    expect(await knownSites(admin)).not.toContain('site-4');
    // The coordinator still serves.
    expect((await admin.status()).federation).toBe('testfed');
  });

  it('refuses a download of bytes beyond the model and an admission of a model it does not hold; with no shards a held model comes whole', async () => {
    const client = rawSite(siteCertFiles(fed, 'site-4'));
    const admitDownload = (sha256: string) =>
      new Promise<{ ok: true; value: DownloadAdmission__Output } | { ok: false; error: grpc.ServiceError }>((resolve) =>
        client.client.AdmitDownload({ sha256 }, (err, res) => resolve(err ? { ok: false, error: err } : { ok: true, value: res! })),
      );
    const download = (sha256: string, offset: number, end: number) =>
      new Promise<{ ok: true; value: number } | { ok: false; error: grpc.ServiceError }>((resolve) => {
        let bytes = 0;
        const call = client.client.Download({ sha256, offset, end });
        call.on('data', (m: ModelChunk__Output) => (bytes += m.data.length));
        call.on('error', (error: grpc.ServiceError) => resolve({ ok: false, error }));
        call.on('end', () => resolve({ ok: true, value: bytes }));
      });
    const global = (await admin.status()).globalModelSha256;
    // Before Join: refused like every other site call.
    expect(refusal(await admitDownload(global)).fedhpcCode).toBe('NOT_JOINED');
    expect((await client.join()).ok).toBe(true);
    expect(refusal(await admitDownload('f'.repeat(64)))).toMatchObject({ code: grpc.status.NOT_FOUND, fedhpcCode: 'MODEL_NOT_FOUND' });
    expect(refusal(await admitDownload('not-a-hash'))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, fedhpcCode: 'BAD_REQUEST' });
    const admission = await admitDownload(global);
    expect(admission).toEqual({ ok: true, value: { parts: [] } });
    expect(refusal(await download(global, 0, 2 ** 40))).toMatchObject({ code: grpc.status.OUT_OF_RANGE, fedhpcCode: 'CHUNK_OUT_OF_RANGE' });
    expect(refusal(await download(global, 200, 100))).toMatchObject({ code: grpc.status.OUT_OF_RANGE, fedhpcCode: 'CHUNK_OUT_OF_RANGE' });
    // A range inside the file is served exactly.
    expect(await download(global, 100, 1_100)).toEqual({ ok: true, value: 1_000 });
  });
});

/**
 * One federation, one round per test: site-1 and site-2 are real agents, site-3 is a raw client
 * with site-3's real certificate that receives each round's train task and then breaks the upload
 * contract in one way. Each round must commit with exactly the two real sites.
 */
describe('uploads that break the contract, during a run of real sites', () => {
  // One round per contract-breaking test, two for the closed-round test.
  const ROUNDS = 12;
  let fed: TestFederation;
  let admin: AdminClient;
  let raw: RawSiteClient;
  let tasks: TaskStream;
  const procs: Proc[] = [];
  const events: AdminEvent[] = [];
  const stopEvents = new AbortController();
  let following: Promise<void> | undefined;

  beforeAll(async () => {
    fed = await createTestFederation({
      sites: 3,
      run: {
        rounds: ROUNDS,
        minSites: 2,
        evaluate: false,
        // The plain (f32) upload contract: secure rounds have their own suite.
        secureAggregation: { enabled: false },
        deadlines: { openS: 30, trainingS: 30, uploadS: 30, aggregateS: 30, commitS: 30, evalS: 15 },
      },
    });
    procs.push(await startCoordinatorProcess(fed));
    admin = fed.admin();
    await admin.waitForReady(Date.now() + 20_000);
    // The bus says why a site was dropped (RoundInfo only says that it was).
    following = admin.events((e) => events.push(e), stopEvents.signal).catch(() => undefined);
    // The round waits for every expected site, so the raw site is in each round's roster.
    ({ client: raw, tasks } = await joinedRawSite(fed, 'site-3'));
    for (const s of ['site-1', 'site-2']) procs.push(await startSiteProcess(fed, s));
  });
  afterAll(async () => {
    stopEvents.abort();
    await following;
    raw?.close();
    for (const p of procs.splice(0).reverse()) await p.stop();
    await fed?.cleanup();
  });

  /** Waits for round `round` to commit; returns every record of that round (aborts included). */
  async function roundRecords(round: number): Promise<RoundInfo__Output[]> {
    const all = await waitFor(
      `round ${round} committed`,
      async () => {
        const r = await admin.rounds();
        return r.rounds.some((x) => x.outcome === 'committed' && Number(x.round) === round) ? r.rounds : undefined;
      },
      45_000,
    );
    return all.filter((x) => Number(x.round) === round);
  }

  /**
   * The round of `task` committed once, on its first attempt, with exactly the real sites, and
   * site-3 was dropped for `code` as soon as it misbehaved (not at the training deadline).
   */
  async function expectCommittedWithoutSite3(task: TrainTask__Output, code: string): Promise<void> {
    const round = Number(task.round);
    const records = await roundRecords(round);
    expect(records.map((x) => x.outcome)).toEqual(['committed']);
    const [committed] = records;
    expect(committed!.attempt).toBe(task.attempt);
    expect([...committed!.participants].sort()).toEqual(['site-1', 'site-2']);
    expect(committed!.dropped).toEqual(['site-3']);
    expect(committed!.parentSha256).toBe(task.globalModel!.sha256);
    expect(Number(committed!.finishedMs)).toBeLessThan(Number(task.trainingDeadlineMs));
    // Events precede the commit on the one stream, so the drop is there once the commit is.
    await waitFor(`round ${round} committed event`, async () =>
      events.some((e) => e.kind === 'round.committed' && e.body['round'] === round) ? true : undefined,
    );
    const drops = events.filter((e) => e.kind === 'site.dropped' && e.body['round'] === round);
    expect(drops.map((e) => e.body['site'])).toEqual(['site-3']);
    expect(String(drops[0]!.body['reason'])).toMatch(new RegExp(`^${code}: `));
    expect((await admin.status()).federation).toBe('testfed');
  }

  interface Misbehaviour {
    readonly name: string;
    readonly messages: (task: TrainTask__Output) => UploadMessage[];
    readonly status: grpc.status;
    readonly code: string;
    /** Strings the error details must contain (they name the problem). */
    readonly names: (task: TrainTask__Output) => string[];
  }

  const withTensors = (task: TrainTask__Output, edit: (t: { name: string; dtype: string; shape: string[] }[]) => void): UploadMessage[] => {
    const delta = craftDelta(task);
    const tensors = task.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] }));
    edit(tensors);
    return validUpload(task, delta, { tensors });
  };
  const NAN_AT = 17;
  const INF_AT = 5001;
  const SKIP = 4096;

  const misbehaviours: Misbehaviour[] = [
    {
      name: 'rejects an upload whose tensor name differs from the global model',
      messages: (task) => withTensors(task, (t) => void (t[0]!.name = 'not.a.tensor')),
      status: grpc.status.INVALID_ARGUMENT,
      code: 'TENSOR_MISMATCH',
      names: (task) => ['"not.a.tensor"', JSON.stringify(task.tensors[0]!.name)],
    },
    {
      name: 'rejects an upload whose tensor shape differs from the global model',
      messages: (task) => withTensors(task, (t) => void (t[0]!.shape[0] = String(Number(t[0]!.shape[0]) + 1))),
      status: grpc.status.INVALID_ARGUMENT,
      code: 'TENSOR_MISMATCH',
      names: (task) => {
        const t = task.tensors[0]!;
        const wrong = [Number(t.shape[0]) + 1, ...t.shape.slice(1)];
        return [t.name, `[${wrong.join(', ')}]`, `[${t.shape.join(', ')}]`];
      },
    },
    {
      name: 'rejects an upload whose tensor dtype differs from the global model',
      messages: (task) => withTensors(task, (t) => void (t[0]!.dtype = 'F16')),
      status: grpc.status.INVALID_ARGUMENT,
      code: 'TENSOR_MISMATCH',
      names: (task) => [task.tensors[0]!.name, 'F16', task.tensors[0]!.dtype],
    },
    {
      name: 'rejects a delta containing NaN',
      messages: (task) => validUpload(task, craftDelta(task, (v) => void (v[NAN_AT] = Number.NaN))),
      status: grpc.status.INVALID_ARGUMENT,
      code: 'NON_FINITE',
      names: () => [`byte ${NAN_AT * 4}`],
    },
    {
      name: 'rejects a delta containing +Infinity',
      messages: (task) => {
        // Small chunks, so the bad value sits in a later chunk and its reported byte is absolute.
        const delta = craftDelta(task, (v) => void (v[INF_AT] = Number.POSITIVE_INFINITY));
        return [{ header: headerFor(task) }, ...chunkMessages(delta, 4096), { trailer: { sha256: sha256Hex(delta) } }];
      },
      status: grpc.status.INVALID_ARGUMENT,
      code: 'NON_FINITE',
      names: () => [`byte ${INF_AT * 4}`],
    },
    {
      name: 'rejects a chunk that runs past the declared total size',
      messages: (task) => {
        const delta = craftDelta(task);
        const head = delta.subarray(0, delta.length - 8);
        // Right offset, but 8 bytes longer than what is left of the declared size.
        const overflow = Buffer.concat([delta.subarray(delta.length - 8), Buffer.alloc(8)]);
        return [
          { header: headerFor(task) },
          ...chunkMessages(head, task.maxChunkBytes),
          { chunk: { offset: head.length, data: overflow } },
          { trailer: { sha256: sha256Hex(Buffer.concat([delta, Buffer.alloc(8)])) } },
        ];
      },
      status: grpc.status.OUT_OF_RANGE,
      code: 'CHUNK_OUT_OF_RANGE',
      names: (task) => {
        const total = task.tensors.reduce((n, t) => n + t.shape.reduce((e, d) => e * Number(d), 1) * 4, 0);
        return [`ends at ${total + 8}`, `declared ${total} bytes`];
      },
    },
    {
      name: 'rejects a chunk at the wrong offset (skipping ahead)',
      messages: (task) => {
        const delta = craftDelta(task);
        return [{ header: headerFor(task) }, ...chunkMessages(delta.subarray(SKIP), task.maxChunkBytes, SKIP), { trailer: { sha256: sha256Hex(delta) } }];
      },
      status: grpc.status.OUT_OF_RANGE,
      code: 'CHUNK_OUT_OF_RANGE',
      names: () => [`offset ${SKIP}`, 'expected 0'],
    },
    {
      name: 'rejects an upload whose trailer SHA-256 does not match its bytes',
      messages: (task) => {
        const delta = craftDelta(task);
        return [{ header: headerFor(task) }, ...chunkMessages(delta, task.maxChunkBytes), { trailer: { sha256: sha256Hex(Buffer.from('something else')) } }];
      },
      status: grpc.status.DATA_LOSS,
      code: 'CHECKSUM_MISMATCH',
      names: (task) => [sha256Hex(craftDelta(task)), sha256Hex(Buffer.from('something else'))],
    },
    {
      // A part goes only to the aggregator shard the coordinator names; sent to the coordinator, a
      // first half would otherwise count as the whole delta.
      name: 'rejects a header that carries a part of the delta (the coordinator takes whole deltas)',
      messages: (task) => {
        const delta = craftDelta(task);
        const half = Math.floor(delta.length / 8) * 4;
        return [{ header: headerFor(task, { partStart: 0, partEnd: half }) }, ...chunkMessages(delta.subarray(0, half), task.maxChunkBytes), { trailer: { sha256: sha256Hex(delta.subarray(0, half)) } }];
      },
      status: grpc.status.INVALID_ARGUMENT,
      code: 'UPLOAD_INVALID',
      names: (task) => [`part [0, ${Math.floor(deltaBytes(task) / 8) * 4})`, 'whole deltas'],
    },
    {
      // With its delta, such a weight would be the whole mean; it is refused, never clamped.
      name: 'refuses a header claiming 2^53 − 1 samples, beyond the run\'s maxSiteWeight (steps 20 × batchSize 32)',
      messages: (task) => validUpload(task, craftDelta(task), { samples: Number.MAX_SAFE_INTEGER }),
      status: grpc.status.OUT_OF_RANGE,
      code: 'WEIGHT_OUT_OF_RANGE',
      names: () => [String(Number.MAX_SAFE_INTEGER), 'maxSiteWeight 640'],
    },
  ];

  for (const m of misbehaviours) {
    it(`${m.name}, drops the site and commits the round with the others`, async () => {
      const task = await tasks.nextTrain(45_000);
      const r = refusal(await raw.upload(m.messages(task)));
      expect(r.code).toBe(m.status);
      expect(r.fedhpcCode).toBe(m.code);
      for (const s of m.names(task)) expect(r.details).toContain(s);
      await expectCommittedWithoutSite3(task, m.code);
    }, 60_000);
  }

  it('refuses an upload for a round that is closed and commits nothing twice', async () => {
    // Round r: site-3 behaves (control: the raw client's uploads are right unless a test breaks them).
    const first = await tasks.nextTrain(45_000);
    const r = Number(first.round);
    const firstDelta = craftDelta(first);
    const accepted = await raw.upload(validUpload(first, firstDelta));
    expect(accepted).toMatchObject({ ok: true, value: { accepted: true, receivedBytes: String(firstDelta.length) } });
    const [committed] = await roundRecords(r);
    expect(committed!.outcome).toBe('committed');
    expect([...committed!.participants].sort()).toEqual(['site-1', 'site-2', 'site-3']);

    // Round r+1 is open: the complete, verified upload of round r, sent again, is refused.
    const second = await tasks.nextTrain(45_000);
    expect(Number(second.round)).toBe(r + 1);
    const stale = refusal(await raw.upload(validUpload(first, firstDelta)));
    expect(stale.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(stale.fedhpcCode).toBe('ROUND_CLOSED');
    expect(stale.details).toContain(`round ${r}.`);

    // A late upload is not a broken contribution: site-3 stays in round r+1 and contributes.
    const secondDelta = craftDelta(second);
    expect(await raw.upload(validUpload(second, secondDelta))).toMatchObject({ ok: true, value: { accepted: true } });
    const next = await roundRecords(r + 1);
    expect(next.map((x) => x.outcome)).toEqual(['committed']);
    expect([...next[0]!.participants].sort()).toEqual(['site-1', 'site-2', 'site-3']);

    // After round r+1 committed (the run may have finished), its upload is refused too.
    const late = refusal(await raw.upload(validUpload(second, secondDelta)));
    expect(late.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(late.fedhpcCode).toBe('ROUND_CLOSED');

    const after = (await admin.rounds()).rounds;
    const committedRounds = after.filter((x) => x.outcome === 'committed').map((x) => Number(x.round));
    expect(committedRounds).toEqual([...new Set(committedRounds)]);
    expect(after.find((x) => Number(x.round) === r && x.outcome === 'committed')).toEqual(committed);
    expect((await admin.status()).federation).toBe('testfed');
  }, 60_000);
});

describe('config files with a wrong field', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-bad-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const coordinatorConfig = (): Record<string, unknown> => ({
    federation: 'testfed',
    listen: '127.0.0.1:7443',
    tls: { ca: 'ca.crt', cert: 'coordinator.crt', key: 'coordinator.key' },
    stateDir: 'state',
    model: { initial: 'initial.safetensors' },
    run: { id: 'run-1', rounds: 3, minSites: 2, train: { steps: 20, batchSize: 32, lr: 0.01 } },
  });
  const siteConfig = (): Record<string, unknown> => ({
    site: 'site-1',
    coordinator: 'localhost:7443',
    tls: { ca: 'ca.crt', cert: 'site.crt', key: 'site.key' },
    workDir: 'work',
    runner: { kind: 'builtin', language: 'en' },
    transfer: { chunkBytes: 65536 },
  });
  async function write(name: string, value: Record<string, unknown>): Promise<string> {
    const file = join(dir, name);
    await writeFile(file, JSON.stringify(value, null, 2));
    return file;
  }
  function configError(load: () => unknown): ConfigError {
    try {
      load();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return err as ConfigError;
    }
    throw new Error('expected a ConfigError, the config loaded');
  }

  it('accepts the unedited configs (control)', async () => {
    expect(loadCoordinatorConfig(await write('coordinator-ok.json', coordinatorConfig())).run?.rounds).toBe(3);
    expect(loadSiteConfig(await write('site-ok.json', siteConfig())).site).toBe('site-1');
  });

  it('refuses a coordinator config with a misspelt field, naming the field and the file', async () => {
    const cfg = coordinatorConfig();
    cfg['run'] = { ...(cfg['run'] as object), rouns: 10 };
    const file = await write('coordinator-typo.json', cfg);
    const err = configError(() => loadCoordinatorConfig(file));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.file).toBe(file);
    expect(err.issues).toContain('run.rouns: unknown field');
    expect(err.message).toContain(file);
    expect(err.message).toContain('run.rouns: unknown field');
  });

  it('refuses a coordinator config with a field of the wrong type, naming the field', async () => {
    const cfg = coordinatorConfig();
    cfg['run'] = { ...(cfg['run'] as object), rounds: 'ten' };
    const file = await write('coordinator-type.json', cfg);
    const err = configError(() => loadCoordinatorConfig(file));
    expect(err.file).toBe(file);
    expect(err.issues.some((i) => i.startsWith('run.rounds: '))).toBe(true);
    expect(err.message).toContain(file);
  });

  it('refuses a site config with a misspelt field, naming the field and the file', async () => {
    const cfg = siteConfig();
    cfg['transfer'] = { chunkBytez: 65536 };
    const file = await write('site-typo.json', cfg);
    const err = configError(() => loadSiteConfig(file));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.file).toBe(file);
    expect(err.issues).toContain('transfer.chunkBytez: unknown field');
    expect(err.message).toContain(file);
  });

  it('refuses a site config with a field of the wrong type, naming the field', async () => {
    const cfg = siteConfig();
    cfg['transfer'] = { chunkBytes: 'big' };
    const file = await write('site-type.json', cfg);
    const err = configError(() => loadSiteConfig(file));
    expect(err.file).toBe(file);
    expect(err.issues.some((i) => i.startsWith('transfer.chunkBytes: '))).toBe(true);
    expect(err.message).toContain(file);
    // Loading never touched the file: the config on disk is what the operator wrote.
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual(cfg);
  });
});
