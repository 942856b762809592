/**
 * A round job whose score the coordinator refuses (NOT_ASKED, EVAL_INVALID, ROUND_CLOSED: final
 * verdicts on that score) warns and trains on; a refusal that is no verdict on the score (a lost
 * connection) still fails the round as before. The link and runner are recorded stand-ins; the
 * global model is already cached, so no transfer runs.
 */
import * as grpc from '@grpc/grpc-js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { siteConfigSchema } from '../../../site-agent/config.js';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { SiteActivity } from '../../../site-agent/activity.js';
import type { FailureReport } from '../../../site-agent/link.js';
import { RoundJobs, type RoundLink } from '../../../site-agent/round-job.js';
import { loadProto } from '../../../proto/index.js';
import type { Runner } from '../../../site-agent/runners/runner.js';
import { cachedModelPath } from '../../../site-agent/download.js';
import type { TrainTask } from '../../../site-agent/wire.js';
import { testLogger } from '../../helpers/logger.js';
import { waitFor } from '../../helpers/wait.js';

const SHA = 'c'.repeat(64);

/** A coordinator refusal as grpc-js delivers it, with the verdict in the metadata. */
function refusal(status: grpc.status, code: string | undefined, retryable: boolean): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  if (code !== undefined) {
    metadata.set('fedhpc-error-code', code);
    metadata.set('fedhpc-retryable', String(retryable));
  }
  return Object.assign(new Error(`${code ?? status}: refused`), { code: status, details: `${code ?? status}: refused`, metadata });
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-round-job-'));
  await mkdir(join(dir, 'models'), { recursive: true });
  await writeFile(cachedModelPath(join(dir, 'models'), SHA), Buffer.alloc(16));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs one train task whose score is answered by `reportEval`; resolves with what the job did. */
async function runJob(reportEval: () => Promise<void>, expectLogs: RegExp[]): Promise<{ trained: boolean; failure: FailureReport }> {
  let trained = false;
  const failures: FailureReport[] = [];
  const runner: Runner = {
    kind: 'builtin',
    evaluate: () => Promise.resolve({ loss: 2.5, samples: 20_000 }),
    train: () => {
      trained = true;
      // The job ends here: what matters is whether training began after the refused score.
      return Promise.reject(new SiteAgentError('TRAINING_FAILED', 'stops the test job here', false));
    },
  };
  // A real client that is never called: the global model is already in the cache, so nothing downloads.
  const { SiteService } = loadProto().fedhpc.v1;
  const client = new SiteService('127.0.0.1:1', grpc.credentials.createInsecure());
  const link: RoundLink = { client, address: '127.0.0.1:1', reportEval, reportFailure: (_a, f) => void failures.push(f) };
  const config = siteConfigSchema.parse({ site: 'site-1', coordinator: 'localhost:1', tls: { ca: 'ca', cert: 'c', key: 'k' }, workDir: dir, runner: { kind: 'builtin', language: 'en' } });
  const jobs = new RoundJobs({
    config,
    runner,
    log: testLogger({ expect: expectLogs }).logger,
    cacheDir: join(dir, 'models'),
    activity: new SiteActivity(),
    metrics: undefined,
    link: () => link,
    contributed: () => undefined,
    secureAttempt: () => expect.fail('a plain round has no secure attempt'),
    fault: () => undefined,
    rejoinIfForgotten: () => false,
    onIdle: () => undefined,
  });
  const task: TrainTask = {
    kind: 'train',
    runId: 'run-1',
    round: 1,
    attempt: 0,
    globalModel: { sha256: SHA, sizeBytes: 16 },
    modelRound: 0,
    tensors: [],
    encoding: 'f32',
    trainConfig: {},
    trainingDeadlineMs: undefined,
    maxChunkBytes: undefined,
    maxStreams: 1,
    evaluate: true,
    shares: [],
    shareHolders: [],
  };
  jobs.start(task);
  const failure = await waitFor('the job to end with a failure report', () => failures[0], 10_000, 20);
  client.close();
  return { trained, failure };
}

describe('a round job whose score is refused', () => {
  it('trains on when the coordinator refuses the score with a final verdict (EVAL_INVALID, NOT_ASKED, ROUND_CLOSED)', async () => {
    for (const code of ['EVAL_INVALID', 'NOT_ASKED', 'ROUND_CLOSED']) {
      const r = await runJob(() => Promise.reject(refusal(grpc.status.INVALID_ARGUMENT, code, false)), [/evaluation refused by the coordinator/, /round failed at this site/]);
      expect([code, r.trained, r.failure.code]).toEqual([code, true, 'TRAINING_FAILED']);
    }
  });

  it('fails the round as before when the report is lost (UNAVAILABLE, no verdict)', async () => {
    const r = await runJob(() => Promise.reject(refusal(grpc.status.UNAVAILABLE, undefined, true)), [/round failed at this site/]);
    expect(r.trained).toBe(false);
    expect(r.failure).toMatchObject({ code: 'TRAINING_FAILED', retryable: true });
  });
});
