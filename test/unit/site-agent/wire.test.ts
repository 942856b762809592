/**
 * The site agent's wire edge (site-agent/wire.ts): generated messages become the agent's own
 * types, with uint64 strings as safe integers, and a message that breaks the contract is refused
 * with WIRE_INVALID (naming the attempt when the coordinator waits on one) instead of reaching the
 * agent as NaN.
 */
import { describe, expect, it } from 'vitest';
import type { Task__Output, TrainTask__Output, UploadReply__Output } from '../../../proto/index.js';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { attemptKey, modelChunksFromWire, taskFromWire, uploadReplyFromWire, type DecodedTask } from '../../../site-agent/wire.js';

const SHA = 'ab'.repeat(32);

function trainTask(patch: Partial<TrainTask__Output> = {}): Task__Output {
  const train: TrainTask__Output = {
    runId: 'run-w',
    round: '7',
    attempt: 2,
    globalModel: { sha256: SHA, sizeBytes: '4096' },
    modelRound: '6',
    tensors: [{ name: 'w', dtype: 'F32', shape: ['4', '256'] }],
    encoding: { name: 'int8' },
    trainConfigJson: '{"steps":3}',
    trainingDeadlineMs: '0',
    uploadDeadlineMs: '0',
    maxChunkBytes: 0,
    evaluate: true,
    shares: [],
    shareHolders: [],
    maxStreams: 2,
    maxStaleness: 0,
    weighting: '',
    maxSiteWeight: 0,
    ...patch,
  };
  return { kind: 'train', train };
}

/** The refusal of a decoded task (the test fails when it decoded). */
function refusalOf(d: DecodedTask): Extract<DecodedTask, { ok: false }> {
  if (d.ok) throw new Error(`expected a refusal, decoded ${JSON.stringify(d.value)}`);
  expect(d.code).toBe('WIRE_INVALID');
  return d;
}

describe('tasks from the wire', () => {
  it('decodes a train task with its uint64 fields as numbers and its train config parsed once', () => {
    const d = taskFromWire(trainTask({ trainingDeadlineMs: '1700000000000', uploadDeadlineMs: '1700000060000', maxChunkBytes: 65536, maxStaleness: 2 }));
    expect(d).toEqual({
      ok: true,
      value: {
        kind: 'train',
        runId: 'run-w',
        round: 7,
        attempt: 2,
        globalModel: { sha256: SHA, sizeBytes: 4096 },
        modelRound: 6,
        tensors: [{ name: 'w', dtype: 'F32', shape: [4, 256] }],
        encoding: 'int8',
        trainConfig: { steps: 3 },
        trainingDeadlineMs: 1_700_000_000_000,
        uploadDeadlineMs: 1_700_000_060_000,
        maxStaleness: 2,
        maxChunkBytes: 65536,
        maxStreams: 2,
        evaluate: true,
        shares: [],
        shareHolders: [],
      },
    });
  });

  it('reads the wire defaults as "none named": f32, no deadline, no chunk limit, an empty config', () => {
    const d = taskFromWire(trainTask({ encoding: null, trainConfigJson: '' }));
    expect(d.ok && d.value).toMatchObject({ encoding: 'f32', trainConfig: {}, trainingDeadlineMs: undefined, uploadDeadlineMs: undefined, maxStaleness: 0, maxChunkBytes: undefined });
  });

  it('keys a task by run, round and attempt as the agent always has', () => {
    const d = taskFromWire(trainTask());
    expect(d.ok && d.value?.kind === 'train' && attemptKey(d.value)).toBe('run-w/7.2');
  });

  it('refuses a round past 2^53, which a Number would round to another round, without an attempt to answer on', () => {
    const r = refusalOf(taskFromWire(trainTask({ round: '9007199254740993' })));
    expect(r.issues[0]).toMatch(/round "9007199254740993" is not a uint64/);
    expect(r.attempt).toBeUndefined();
  });

  it('refuses a train task whose model size is no integer, naming the attempt so the site can report it', () => {
    const r = refusalOf(taskFromWire(trainTask({ globalModel: { sha256: SHA, sizeBytes: '12e3' } })));
    expect(r.issues[0]).toMatch(/globalModel\.sizeBytes/);
    expect(r.attempt).toEqual({ runId: 'run-w', round: 7, attempt: 2 });
  });

  it('refuses a train task without a global model, and one whose train config is not a JSON object', () => {
    expect(refusalOf(taskFromWire(trainTask({ globalModel: null }))).issues[0]).toMatch(/without its globalModel/);
    expect(refusalOf(taskFromWire(trainTask({ trainConfigJson: '[1, 2]' }))).issues[0]).toMatch(/not a JSON object/);
    expect(refusalOf(taskFromWire(trainTask({ trainConfigJson: '{' }))).issues[0]).toMatch(/not JSON/);
  });

  it('reads a train task\'s weighting and maxSiteWeight (empty and 0: not sent), refusing an unknown weighting and a maxSiteWeight below 1', () => {
    expect(taskFromWire(trainTask({ weighting: 'tokens', maxSiteWeight: 9_000_000 }))).toMatchObject({ ok: true, value: { weighting: 'tokens', maxSiteWeight: 9_000_000 } });
    expect(taskFromWire(trainTask())).toMatchObject({ ok: true, value: { weighting: undefined, maxSiteWeight: undefined } });
    expect(refusalOf(taskFromWire(trainTask({ weighting: 'bytes' }))).issues[0]).toMatch(/train task weighting by "bytes"/);
    const low = refusalOf(taskFromWire(trainTask({ weighting: 'samples', maxSiteWeight: 0.5 })));
    expect(low.issues[0]).toMatch(/maxSiteWeight 0\.5/);
    expect(low.attempt).toEqual({ runId: 'run-w', round: 7, attempt: 2 });
    expect(refusalOf(taskFromWire(trainTask({ maxSiteWeight: Number.NaN }))).issues[0]).toMatch(/maxSiteWeight NaN/);
  });

  it('refuses a keys task without its parameters, and maps an unset modulus to 32 bits and an unset weighting to samples', () => {
    const keys = { runId: 'run-w', round: '3', attempt: 0, params: null };
    expect(refusalOf(taskFromWire({ kind: 'keys', keys })).attempt).toEqual({ runId: 'run-w', round: 3, attempt: 0 });
    const params = { threshold: 2, quantBits: 16, modulusBits: 0, clip: 1, maxWeight: 100, weighting: '', graphSeed: Buffer.alloc(32), degree: 0, roster: ['a', 'b'] };
    const d = taskFromWire({ kind: 'keys', keys: { ...keys, params } });
    expect(d.ok && d.value).toMatchObject({ kind: 'keys', round: 3, params: { modulusBits: 32, threshold: 2, maxSiteWeight: 100, weighting: 'samples' } });
    const tokens = taskFromWire({ kind: 'keys', keys: { ...keys, params: { ...params, weighting: 'tokens' } } });
    expect(tokens.ok && tokens.value).toMatchObject({ params: { weighting: 'tokens' } });
  });

  it('refuses a keys task whose maxWeight is below 1, whose weighting is unknown or whose modulus is not 16 or 32 bits', () => {
    const params = { threshold: 2, quantBits: 16, modulusBits: 32, clip: 1, maxWeight: 100, weighting: 'samples', graphSeed: Buffer.alloc(32), degree: 0, roster: ['a', 'b'] };
    const keys = (p: Partial<typeof params>) => taskFromWire({ kind: 'keys', keys: { runId: 'run-w', round: '3', attempt: 0, params: { ...params, ...p } } });
    expect(refusalOf(keys({ maxWeight: 0 })).issues[0]).toMatch(/maxWeight 0/);
    expect(refusalOf(keys({ maxWeight: Number.NaN })).issues[0]).toMatch(/maxWeight NaN/);
    expect(refusalOf(keys({ weighting: 'bytes' })).issues[0]).toMatch(/weighting by "bytes"/);
    expect(refusalOf(keys({ modulusBits: 17 })).issues[0]).toMatch(/modulus is 2\^17/);
    expect(refusalOf(keys({ modulusBits: 64 })).issues[0]).toMatch(/modulus is 2\^64/);
  });

  it('decodes an eval task with no deadline as undefined, and a cancel with its attempt', () => {
    const e = taskFromWire({ kind: 'eval', eval: { runId: 'run-w', model: { sha256: SHA, sizeBytes: '10' }, modelRound: '3', deadlineMs: '0' } });
    expect(e).toEqual({ ok: true, value: { kind: 'eval', runId: 'run-w', model: { sha256: SHA, sizeBytes: 10 }, modelRound: 3, deadlineMs: undefined } });
    const c = taskFromWire({ kind: 'cancel', cancel: { runId: 'run-w', round: '3', attempt: 1, reason: 'aborted' } });
    expect(c).toEqual({ ok: true, value: { kind: 'cancel', runId: 'run-w', round: 3, attempt: 1, reason: 'aborted' } });
  });

  it('ignores a task of no kind it knows (a newer coordinator\'s), as proto3 intends', () => {
    expect(taskFromWire({})).toEqual({ ok: true, value: undefined });
  });
});

describe('transfer replies from the wire', () => {
  it('decodes each upload reply kind with its offsets as numbers', () => {
    const cases: [UploadReply__Output, unknown][] = [
      [{ kind: 'accepted', accepted: { offset: '1024', chunkBytes: 4096, windowBytes: '65536', wholeDigest: false } }, { kind: 'accepted', offset: 1024, windowBytes: 65536, wholeDigest: false }],
      [{ kind: 'accepted', accepted: { offset: '0', chunkBytes: 4096, windowBytes: '65536', wholeDigest: true } }, { kind: 'accepted', offset: 0, windowBytes: 65536, wholeDigest: true }],
      [{ kind: 'ack', ack: { offset: '2048' } }, { kind: 'ack', offset: 2048 }],
      [{ kind: 'resend', resend: { offset: '512', reason: 'crc' } }, { kind: 'resend', offset: 512 }],
      [{ kind: 'queued', queued: { budgetBytes: '100', usedBytes: '90', waitingStreams: 3 } }, { kind: 'queued', queue: { budgetBytes: 100, usedBytes: 90, waitingStreams: 3 } }],
      [
        { kind: 'result', result: { accepted: true, receivedBytes: '4096', message: '', complete: true, sha256: SHA } },
        { kind: 'result', outcome: { accepted: true, receivedBytes: 4096, message: '', complete: true, sha256: SHA } },
      ],
    ];
    for (const [wire, domain] of cases) expect(uploadReplyFromWire(wire)).toEqual({ ok: true, value: domain });
  });

  it('refuses an acknowledgement past 2^53 with WIRE_INVALID', () => {
    const r = uploadReplyFromWire({ kind: 'ack', ack: { offset: '18446744073709551615' } });
    expect(r).toMatchObject({ ok: false, code: 'WIRE_INVALID' });
  });

  it('ends a download whose chunk offset is no integer with a final WIRE_INVALID error', async () => {
    async function* chunks(): AsyncGenerator<{ offset: string; data: Buffer; totalBytes: string; crc32c: number }> {
      yield { offset: '0', data: Buffer.from('ab'), totalBytes: '4', crc32c: 1 };
      yield { offset: '-2', data: Buffer.from('cd'), totalBytes: '4', crc32c: 2 };
    }
    const seen: number[] = [];
    const err = await (async () => {
      for await (const c of modelChunksFromWire(chunks())) seen.push(c.offset);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([0]);
    expect(err).toBeInstanceOf(SiteAgentError);
    expect(err).toMatchObject({ code: 'WIRE_INVALID', retryable: false });
  });
});
