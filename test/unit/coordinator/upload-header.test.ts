import { describe, expect, it } from 'vitest';
import { wireHeader } from '../../helpers/wire-header.js';
import { CoordinatorError, type CoordinatorErrorCode } from '../../../coordinator/core/errors.js';
import { type UploadExpectation, type UploadIntent, isFoldRefusal, validateHeader as validateDomainHeader } from '../../../coordinator/upload/header.js';
import { uploadHeaderFromWire } from '../../../coordinator/service/wire.js';
import type { UploadHeader__Output as WireHeader } from '../../../proto/index.js';

/** A wire header through the edge (where counts become integers), then checked against `site-1`'s round. */
function validateHeader(h: WireHeader, exp: UploadExpectation, site = 'site-1'): UploadIntent {
  return validateDomainHeader(uploadHeaderFromWire(h), exp, site);
}
import type { UploadHeader__Output } from '../../../proto/index.js';
import { RunBases } from '../../../coordinator/upload/bases.js';

const GLOBAL = 'a'.repeat(64);
const INITIAL = '0'.repeat(64);
const ROUND_1 = '1'.repeat(64);

/** A run at round 3: the initial model, round 1's and round 2's (GLOBAL); site-1 took part in round 1 from the initial model. */
function runBases(): RunBases {
  const participant = { site: 'site-1', weight: 1, samples: 1, tokens: 1, steps: 1, trainLoss: 1, deltaSha256: 'd'.repeat(64), dataManifestSha256: '' };
  const bases = new RunBases(INITIAL);
  bases.recordCommit(1, ROUND_1, INITIAL, [participant]);
  bases.recordCommit(2, GLOBAL, ROUND_1, []);
  return bases;
}

const EXPECTATION: UploadExpectation = {
  runId: 'run-1',
  round: 3,
  attempt: 1,
  globalSha256: GLOBAL,
  tensors: [
    { name: 'w', dtype: 'F32', shape: [2, 3], elements: 6 },
    { name: 'b', dtype: 'F32', shape: [4], elements: 4 },
  ],
  encoding: 'f32',
  maxChunkBytes: 1 << 20,
  weighting: 'samples',
  maxSiteWeight: 4096,
  modelRound: 2,
  maxStaleness: 2,
  bases: runBases(),
};

/** What the wire decodes when a sender sets no stripe fields: the whole delta, one stripe. */
function header(patch: Partial<UploadHeader__Output> = {}): UploadHeader__Output {
  const fields = {
    runId: 'run-1',
    round: '3',
    attempt: 1,
    baseModelSha256: GLOBAL,
    encoding: { name: 'f32' },
    tensors: [
      { name: 'w', dtype: 'F32', shape: ['2', '3'] },
      { name: 'b', dtype: 'F32', shape: ['4'] },
    ],
    totalBytes: '40',
    samples: '128',
    tokens: '4096',
    steps: '10',
    trainLoss: 2.5,
    dataManifestSha256: 'b'.repeat(64),
  };
  return wireHeader(fields, patch);
}

function refusal(h: UploadHeader__Output, exp: UploadExpectation = EXPECTATION): CoordinatorError {
  try {
    validateHeader(h, exp);
  } catch (e) {
    expect(e).toBeInstanceOf(CoordinatorError);
    return e as CoordinatorError;
  }
  throw new Error('header was accepted');
}

function expectRefused(h: UploadHeader__Output, code: CoordinatorErrorCode, messagePart?: string, exp?: UploadExpectation): void {
  const e = refusal(h, exp);
  expect(e.code).toBe(code);
  if (messagePart !== undefined) expect(e.message).toContain(messagePart);
}

describe('validateHeader', () => {
  it('accepts a correct header and returns the intent weighted by samples', () => {
    expect(validateHeader(header(), EXPECTATION)).toMatchObject({
      round: 3,
      attempt: 1,
      totalBytes: 40,
      stripe: { start: 0, end: 40, count: 1 },
      chunkBytes: 1 << 20,
      weight: 128,
      samples: 128,
      tokens: 4096,
      steps: 10,
      trainLoss: 2.5,
      dataManifestSha256: 'b'.repeat(64),
    });
  });

  it('weights by tokens or uniformly as the run says', () => {
    expect(validateHeader(header(), { ...EXPECTATION, weighting: 'tokens' }).weight).toBe(4096);
    expect(validateHeader(header(), { ...EXPECTATION, weighting: 'uniform' }).weight).toBe(1);
  });

  it('gives weight 1 under uniform weighting even when samples and tokens are 0', () => {
    const intent = validateHeader(header({ samples: '0', tokens: '0' }), { ...EXPECTATION, weighting: 'uniform' });
    expect(intent).toMatchObject({ weight: 1, samples: 0, tokens: 0 });
  });

  it('accepts an empty data manifest hash and maps a non-finite loss to NaN', () => {
    const intent = validateHeader(header({ dataManifestSha256: '', trainLoss: Number.POSITIVE_INFINITY }), EXPECTATION);
    expect(intent.dataManifestSha256).toBe('');
    expect(intent.trainLoss).toBeNaN();
  });

  it('refuses an upload for another run, round or attempt with ROUND_CLOSED', () => {
    expectRefused(header({ runId: 'run-2' }), 'ROUND_CLOSED', 'run-2');
    expectRefused(header({ round: '2' }), 'ROUND_CLOSED', 'round 2.1');
    expectRefused(header({ attempt: 0 }), 'ROUND_CLOSED', 'round 3.0');
    expect(refusal(header({ round: '4' })).context).toEqual({ round: 4, attempt: 1 });
    expect(refusal(header({ attempt: 0 })).retryable).toBe(false);
  });

  it('refuses a delta computed against no committed model of the run with BASE_UNKNOWN', () => {
    expectRefused(header({ baseModelSha256: 'c'.repeat(64) }), 'BASE_UNKNOWN', 'c'.repeat(64));
  });

  it('discounts a delta from an older base by ⌊k/(1 + s)⌋ and refuses one beyond maxStaleness with STALE_DELTA', () => {
    expect(validateHeader(header({ baseModelSha256: ROUND_1 }), EXPECTATION)).toMatchObject({ staleness: 1, weight: 64, samples: 128 });
    expect(validateHeader(header({ baseModelSha256: INITIAL, samples: '100' }), EXPECTATION)).toMatchObject({ staleness: 2, weight: 33 });
    const e = refusal(header({ baseModelSha256: INITIAL }), { ...EXPECTATION, maxStaleness: 1 });
    expect(e.code).toBe('STALE_DELTA');
    expect(e.retryable).toBe(false);
    expect(e.context).toMatchObject({ baseRound: 0, modelRound: 2, maxStaleness: 1 });
  });

  describe('folded parts (budgeted rounds)', () => {
    const fold = (base: string, samples: number) => ({ baseModelSha256: base, samples: String(samples), tokens: '0', steps: '3' });

    it('adds a folded part discounted by its staleness to the weight, and journals what it counted', () => {
      // site-2 missed round 2's window with 90 samples trained from ROUND_1: staleness 1, counts 45.
      const intent = validateHeader(header({ folded: [fold(ROUND_1, 90)] }), EXPECTATION, 'site-2');
      expect(intent).toMatchObject({ weight: 128 + 45, staleness: 0, folded: [{ baseModelSha256: ROUND_1, staleness: 1, samples: 90, count: 45 }] });
    });

    it('scales the folded parts down to fit maxSiteWeight, never the fresh part', () => {
      const intent = validateHeader(header({ samples: '4000', folded: [fold(ROUND_1, 400), fold(INITIAL, 300)] }), EXPECTATION, 'site-2');
      // F = 4000, S = 200 + 100: only 96 fit, each folded part × 96/300.
      expect(intent.weight).toBe(4096);
      expect(intent.folded.map((f) => f.count)).toEqual([64, 32]);
      expectRefused(header({ samples: '4097', folded: [fold(ROUND_1, 2)] }), 'WEIGHT_OUT_OF_RANGE');
    });

    it('refuses work a committed round counted already (ALREADY_COUNTED): site-1 took part in round 1 from the initial model', () => {
      expectRefused(header({ folded: [fold(INITIAL, 10)] }), 'ALREADY_COUNTED', 'site-1');
      // A refused fold leaves the site in the round (its fresh work may come alone); a refused fresh part does not.
      expect(isFoldRefusal(refusal(header({ folded: [fold(INITIAL, 10)] })))).toBe(true);
      expect(isFoldRefusal(refusal(header({ folded: [fold('e'.repeat(64), 10)] })))).toBe(true);
      expect(isFoldRefusal(refusal(header({ baseModelSha256: 'e'.repeat(64) })))).toBe(false);
      expect(isFoldRefusal(refusal(header({ baseModelSha256: INITIAL }), { ...EXPECTATION, maxStaleness: 1 }))).toBe(false);
      expect(validateHeader(header({ folded: [fold(INITIAL, 10)] }), EXPECTATION, 'site-2').weight).toBe(128 + 3);
    });

    it('refuses folded parts not strictly older than the fresh part, repeated bases, unknown or too stale bases, and too many parts', () => {
      expectRefused(header({ folded: [fold(GLOBAL, 10)] }), 'UPLOAD_INVALID', 'older');
      expectRefused(header({ baseModelSha256: ROUND_1, folded: [fold(ROUND_1, 10)] }), 'UPLOAD_INVALID', 'older');
      expectRefused(header({ folded: [fold(ROUND_1, 10), fold(ROUND_1, 10)] }), 'UPLOAD_INVALID', 'distinct');
      expectRefused(header({ folded: [fold('e'.repeat(64), 10)] }), 'BASE_UNKNOWN', 'folded part 0');
      expectRefused(header({ folded: [fold(INITIAL, 10)] }), 'STALE_DELTA', undefined, { ...EXPECTATION, maxStaleness: 1 });
      expectRefused(header({ folded: [fold(ROUND_1, 1), fold(INITIAL, 1)] }), 'UPLOAD_INVALID', 'at most 1', { ...EXPECTATION, maxStaleness: 1, bases: runBases() });
    });
  });

  it('refuses more tokens than a token budget plus one batch with BUDGET_EXCEEDED', () => {
    const exp = { ...EXPECTATION, weighting: 'tokens' as const, tokenCap: 4096 };
    expect(validateHeader(header({ tokens: '4096' }), exp).weight).toBe(4096);
    expectRefused(header({ tokens: '4097' }), 'BUDGET_EXCEEDED', '4097', exp);
  });

  it('refuses a busy span that ends before it starts', () => {
    expect(validateHeader(header({ trainStartedMs: '1000', trainFinishedMs: '5000' }), EXPECTATION)).toMatchObject({ trainStartedMs: 1000, trainFinishedMs: 5000 });
    expectRefused(header({ trainStartedMs: '5000', trainFinishedMs: '1000' }), 'UPLOAD_INVALID', 'before');
  });

  describe('overlapped rounds (run.train.overlap)', () => {
    const bounded = { ...EXPECTATION, maxAppliedSteps: 8 };

    it('carries the applied staleness and busy time into the intent, up to the bound and without one', () => {
      expect(validateHeader(header({ appliedStalenessSteps: 8, busyMs: '4200' }), bounded)).toMatchObject({ appliedStaleness: 8, busyMs: 4200 });
      expect(validateHeader(header({ appliedStalenessSteps: 2 ** 32 - 1 }), EXPECTATION).appliedStaleness).toBe(2 ** 32 - 1);
      expect(validateHeader(header(), bounded)).toMatchObject({ appliedStaleness: 0, busyMs: 0 });
    });

    it('refuses an applied staleness above maxAppliedSteps with STALE_TRAINER, which drops the site from the attempt', () => {
      const e = refusal(header({ appliedStalenessSteps: 9 }), bounded);
      expect(e).toMatchObject({ code: 'STALE_TRAINER', retryable: false, context: { round: 3, appliedStaleness: 9, limit: 8 } });
      expect(e.message).toContain('9 inner steps');
      expect(e.message).toContain('maxAppliedSteps 8');
      expect(isFoldRefusal(e)).toBe(false);
    });

    it('refuses a busy time that is no safe integer at the wire edge (UPLOAD_INVALID)', () => {
      expectRefused(header({ busyMs: '9007199254740993' }), 'UPLOAD_INVALID', 'busyMs');
      expectRefused(header({ busyMs: '-1' }), 'UPLOAD_INVALID', 'busyMs');
    });
  });

  it('refuses an encoding that was not negotiated with UPLOAD_INVALID', () => {
    expectRefused(header({ encoding: { name: 'int8' } }), 'UPLOAD_INVALID', 'int8');
    expectRefused(header({ encoding: null }), 'UPLOAD_INVALID', 'encoding');
  });

  it('refuses a different tensor count with TENSOR_MISMATCH', () => {
    expectRefused(header({ tensors: header().tensors.slice(0, 1) }), 'TENSOR_MISMATCH', '1 tensors');
    expectRefused(header({ tensors: [...header().tensors, { name: 'x', dtype: 'F32', shape: ['1'] }] }), 'TENSOR_MISMATCH', '3 tensors');
  });

  it('refuses a tensor of another name, dtype or shape, naming the tensor', () => {
    const [w, b] = header().tensors;
    expectRefused(header({ tensors: [w!, { ...b!, name: 'bias' }] }), 'TENSOR_MISMATCH', '"bias"');
    expectRefused(header({ tensors: [b!, w!] }), 'TENSOR_MISMATCH', '"b", expected "w"');
    expectRefused(header({ tensors: [w!, { ...b!, dtype: 'BF16' }] }), 'TENSOR_MISMATCH', 'tensor b has dtype BF16');
    expectRefused(header({ tensors: [{ ...w!, shape: ['3', '2'] }, b!] }), 'TENSOR_MISMATCH', 'tensor w has shape [3, 2]');
    expectRefused(header({ tensors: [{ ...w!, shape: ['6'] }, b!] }), 'TENSOR_MISMATCH', 'tensor w');
    expectRefused(header({ tensors: [w!, { ...b!, shape: ['4', '1'] }] }), 'TENSOR_MISMATCH', 'tensor b');
    expect(refusal(header({ tensors: [w!, { ...b!, dtype: 'F16' }] })).context).toEqual({ tensor: 'b' });
  });

  it('refuses a totalBytes that does not match the tensors with UPLOAD_INVALID', () => {
    expectRefused(header({ totalBytes: '36' }), 'UPLOAD_INVALID', 'totalBytes is 36');
    expectRefused(header({ totalBytes: '44' }), 'UPLOAD_INVALID', 'need 40');
  });

  it('refuses zero samples under samples weighting and zero tokens under tokens weighting', () => {
    expectRefused(header({ samples: '0' }), 'UPLOAD_INVALID', 'samples');
    expectRefused(header({ tokens: '0' }), 'UPLOAD_INVALID', 'tokens', { ...EXPECTATION, weighting: 'tokens' });
  });

  it('refuses a weight above maxSiteWeight with WEIGHT_OUT_OF_RANGE in the unit of the weighting, never clamping it', () => {
    // At the bound: accepted as declared.
    expect(validateHeader(header({ samples: '4096' }), EXPECTATION).weight).toBe(4096);
    expectRefused(header({ samples: '4097' }), 'WEIGHT_OUT_OF_RANGE', 'a weight of 4097 samples exceeds the run\'s maxSiteWeight 4096');
    expectRefused(header({ samples: String(Number.MAX_SAFE_INTEGER) }), 'WEIGHT_OUT_OF_RANGE', String(Number.MAX_SAFE_INTEGER));
    const e = refusal(header({ tokens: '4097' }), { ...EXPECTATION, weighting: 'tokens' });
    expect(e).toMatchObject({ code: 'WEIGHT_OUT_OF_RANGE', retryable: false, context: { weight: 4097, maxSiteWeight: 4096 } });
    // Under tokens weighting the samples do not count, and under uniform neither does.
    expect(validateHeader(header({ samples: '999999' }), { ...EXPECTATION, weighting: 'tokens' }).weight).toBe(4096);
    expect(validateHeader(header({ samples: '999999', tokens: '999999' }), { ...EXPECTATION, weighting: 'uniform', maxSiteWeight: 1 }).weight).toBe(1);
  });

  it('refuses a data manifest hash that is not a lowercase SHA-256', () => {
    expectRefused(header({ dataManifestSha256: 'B'.repeat(64) }), 'UPLOAD_INVALID', 'dataManifestSha256');
    expectRefused(header({ dataManifestSha256: 'abc' }), 'UPLOAD_INVALID', 'dataManifestSha256');
  });

  it.each(['round', 'totalBytes', 'samples', 'tokens', 'steps'] as const)('refuses non-integer strings in u64 field %s', (field) => {
    for (const bad of ['', '1.5', '-1', '1e3', ' 1', '0x10', 'abc', '12345678901234567', '9007199254740993']) {
      expectRefused(header({ [field]: bad }), 'UPLOAD_INVALID', field);
    }
  });

  it('refuses non-integer shape dimensions', () => {
    const [w, b] = header().tensors;
    expectRefused(header({ tensors: [{ ...w!, shape: ['2', '3.0'] }, b!] }), 'UPLOAD_INVALID', 'tensors[0].shape');
    expectRefused(header({ tensors: [w!, { ...b!, shape: ['-4'] }] }), 'UPLOAD_INVALID', 'tensors[1].shape');
  });
});
