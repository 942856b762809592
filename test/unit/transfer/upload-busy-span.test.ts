/**
 * The upload header carries the busy span the runner reported (issue 16): `train_started_ms` and
 * `train_finished_ms` reach the coordinator's side of a real gRPC stream, 0/0 when the runner did
 * not say (a result an older agent saved before restarting, a runner outside this repository).
 */
import * as grpc from '@grpc/grpc-js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSafetensorsWriter, memorySink } from '../../../aggregation/index.js';
import { loadProto, type UploadMessage__Output, type UploadReply } from '../../../proto/index.js';
import { siteConfigSchema } from '../../../site-agent/config.js';
import { uploadRoundDelta } from '../../../site-agent/round-upload.js';
import type { TrainResult } from '../../../site-agent/runners/runner.js';
import type { TrainTask } from '../../../site-agent/wire.js';
import { testLogger } from '../../helpers/logger.js';

const N = 64;

async function writeModel(path: string, f: (i: number) => number): Promise<void> {
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, [{ name: 'w', dtype: 'F32', shape: [N] }]);
  await w.writeF32('w', Float32Array.from({ length: N }, (_, i) => f(i)));
  await w.finish();
  await writeFile(path, sink.bytes());
}

describe('the upload header', () => {
  let dir = '';
  let server: grpc.Server;
  let port = 0;
  const headers: UploadMessage__Output['header'][] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-busy-span-'));
    await writeModel(join(dir, 'global.safetensors'), (i) => i / N);
    await writeModel(join(dir, 'local.safetensors'), (i) => i / N + 1e-3);
    // A coordinator's Upload that reads the header and answers that it already holds the stripe.
    const { SiteService } = loadProto().fedhpc.v1;
    server = new grpc.Server();
    server.addService(SiteService.service, {
      Upload: (call: grpc.ServerDuplexStream<UploadMessage__Output, UploadReply>) => {
        call.once('data', (m: UploadMessage__Output) => {
          headers.push(m.header);
          call.write({ result: { accepted: true, complete: true, receivedBytes: 4 * N, sha256: '', message: '' } });
          call.end();
        });
      },
    });
    port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  });
  afterAll(async () => {
    server?.forceShutdown();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function upload(result: TrainResult): Promise<UploadMessage__Output['header']> {
    const { SiteService } = loadProto().fedhpc.v1;
    const client = new SiteService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const config = siteConfigSchema.parse({ site: 'site-1', coordinator: 'localhost:1', tls: { ca: 'ca', cert: 'c', key: 'k' }, workDir: dir, runner: { kind: 'standin' } });
    const task: TrainTask = {
      kind: 'train',
      runId: 'run-1',
      round: 2,
      attempt: 0,
      globalModel: { sha256: 'a'.repeat(64), sizeBytes: 0 },
      modelRound: 1,
      tensors: [{ name: 'w', dtype: 'F32', shape: [N] }],
      encoding: 'f32',
      trainConfig: {},
      trainingDeadlineMs: undefined,
      maxChunkBytes: undefined,
      maxStreams: 1,
      evaluate: false,
      shares: [],
      shareHolders: [],
    };
    const before = headers.length;
    try {
      const res = await uploadRoundDelta({
        client,
        coordinator: 'localhost:1',
        config,
        task,
        globalPath: join(dir, 'global.safetensors'),
        result,
        secure: undefined,
        log: testLogger().logger,
        signal: AbortSignal.timeout(10_000),
        onMeter: () => undefined,
        sink: { tty: false, write: () => undefined },
      });
      expect(res).toMatchObject({ accepted: true, complete: true });
    } finally {
      client.close();
    }
    expect(headers.length).toBe(before + 1);
    return headers.at(-1)!;
  }

  const result = (span: Partial<TrainResult>): TrainResult => ({
    outPath: join(dir, 'local.safetensors'),
    samples: 32,
    tokens: 4096,
    steps: 4,
    trainLoss: 2.5,
    dataManifestSha256: 'b'.repeat(64),
    ...span,
  });

  it('carries the runner\'s busy span as train_started_ms and train_finished_ms, beside its counts', async () => {
    const h = await upload(result({ trainStartedMs: 1_764_900_000_123, trainFinishedMs: 1_764_900_042_456 }));
    expect(h).toMatchObject({ trainStartedMs: '1764900000123', trainFinishedMs: '1764900042456', tokens: '4096', steps: '4', samples: '32' });
  });

  it('sends 0/0 when the runner did not say', async () => {
    const h = await upload(result({}));
    expect(h).toMatchObject({ trainStartedMs: '0', trainFinishedMs: '0' });
  });
});
