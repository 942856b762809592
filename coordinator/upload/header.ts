/**
 * Checking an upload header: against the open round, the global model's tensors and the run's
 * encoding, and the stripe it declares. The header arrives converted by the wire edge (coordinator/service/wire.ts); the stream itself is served by `stream.ts`; a delta
 * joins the sum only once it is complete and verified (DESIGN.md, "Decisions").
 */
import { createHash } from 'node:crypto';
import type { UploadHeader } from './frames.js';
import { canonicalJson } from '../state/journal.js';
import type { RunBases } from './bases.js';
import { CoordinatorError } from '../core/errors.js';
import { declaredCount, deltaSegments, isUnitBoundary, segmentsBytes, uploadWeight, type Segment, type DeltaEncoding, type Weighting } from '../../aggregation/index.js';

/** One tensor of the global model as uploads must declare it. */
export interface LayoutTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly elements: number;
}

/** What an upload is checked against: the round that is open now. */
export interface UploadExpectation {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly globalSha256: string;
  readonly tensors: readonly LayoutTensor[];
  /** `f32`, `bf16` or `int8` for plain rounds; masked fixed point (`secagg32`, `secagg16`) for secure ones. */
  readonly encoding: DeltaEncoding;
  readonly maxChunkBytes: number;
  /** What a site's weight counts (secure rounds too: the masked weight word follows it). */
  readonly weighting: Weighting;
  /** The largest weight one site may declare (`run.maxSiteWeight`); a larger one is refused. */
  readonly maxSiteWeight: number;
  /** Round that produced the round's global model (0: the initial model): staleness counts from it. */
  readonly modelRound: number;
  /** Most rounds a part's base may lie behind `modelRound` (`run.maxStaleness`). */
  readonly maxStaleness: number;
  /** The run's committed models and the work already counted. */
  readonly bases: RunBases;
  /** Token-budgeted runs: the most tokens one fresh part may declare (the budget plus one batch). */
  readonly tokenCap?: number | undefined;
  /** Overlapped runs: the most inner steps a sync's applied staleness may be (`run.train.overlap.maxAppliedSteps`). */
  readonly maxAppliedSteps?: number | undefined;
}

/** A folded part as validated: its base's staleness and what it counts in the upload's weight. */
export interface FoldedIntent {
  readonly baseModelSha256: string;
  readonly staleness: number;
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
  /** Its discounted count times the scale that fitted the parts under maxSiteWeight. */
  readonly count: number;
}

/** A validated upload header in domain terms. */
export interface UploadIntent {
  readonly round: number;
  readonly attempt: number;
  readonly totalBytes: number;
  /** The count the upload weighs with: fresh and folded parts, discounted (W in docs/protocol.md). */
  readonly weight: number;
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
  readonly trainLoss: number;
  readonly dataManifestSha256: string;
  /** The run's encoding of the delta, and its byte layout in it. */
  readonly encoding: DeltaEncoding;
  readonly segments: readonly Segment[];
  /**
   * The bytes this upload carries: the whole delta [0, totalBytes), or the part [start, end) an
   * aggregator shard takes (issue 22), which its stripes then tile.
   */
  readonly part: { readonly start: number; readonly end: number };
  /** The stripe this stream carries, and how many the site splits its part into. */
  readonly stripe: { readonly start: number; readonly end: number; readonly count: number };
  /** Largest chunk this stream sends. */
  readonly chunkBytes: number;
  readonly baseModelSha256: string;
  /** Rounds the fresh part's base lies behind the round's model. */
  readonly staleness: number;
  readonly folded: readonly FoldedIntent[];
  readonly trainStartedMs: number;
  readonly trainFinishedMs: number;
  /** Overlapped rounds: inner steps between the site's previous snapshot and the step that applied the base (0 otherwise). */
  readonly appliedStaleness: number;
  /** Sum of the training steps' durations within the busy span, ms (0: not reported). */
  readonly busyMs: number;
  /**
   * A named delta's identity across attempts: the SHA-256 of the header but for its attempt and
   * stream fields (undefined when `contentId` is empty). Two uploads with the same key promise the
   * same bytes (reuse.ts).
   */
  readonly contentKey: string | undefined;
}

/** Most stripes one delta may be split into. */
export const MAX_STRIPES = 64;

/** Checks `site`'s header against the open round, the global model's tensors and the run's bases. */
export function validateHeader(h: UploadHeader, exp: UploadExpectation, site: string): UploadIntent {
  const round = h.round;
  if (h.runId !== exp.runId || round !== exp.round || h.attempt !== exp.attempt) {
    throw new CoordinatorError(
      'ROUND_CLOSED',
      `upload for run ${h.runId} round ${round}.${h.attempt}, but the open round is ${exp.runId} ${exp.round}.${exp.attempt}`,
      { round, attempt: h.attempt },
    );
  }
  const staleness = stalenessOf(h.baseModelSha256, exp, 'the delta', 'fresh');
  if (h.encoding !== exp.encoding) {
    throw new CoordinatorError('UPLOAD_INVALID', `encoding ${JSON.stringify(h.encoding)} was not negotiated for this run (expected ${exp.encoding})`);
  }
  if (h.tensors.length !== exp.tensors.length) {
    throw new CoordinatorError('TENSOR_MISMATCH', `delta declares ${h.tensors.length} tensors, the global model has ${exp.tensors.length}`);
  }
  exp.tensors.forEach((t, i) => {
    const got = h.tensors[i]!;
    const shape = got.shape;
    if (got.name !== t.name) {
      throw new CoordinatorError('TENSOR_MISMATCH', `tensor ${i} is ${JSON.stringify(got.name)}, expected ${JSON.stringify(t.name)}`, { index: i });
    }
    if (got.dtype !== t.dtype) {
      throw new CoordinatorError('TENSOR_MISMATCH', `tensor ${t.name} has dtype ${got.dtype}, the global model's is ${t.dtype}`, { tensor: t.name });
    }
    if (shape.length !== t.shape.length || shape.some((d, j) => d !== t.shape[j])) {
      throw new CoordinatorError('TENSOR_MISMATCH', `tensor ${t.name} has shape [${shape.join(', ')}], expected [${t.shape.join(', ')}]`, { tensor: t.name });
    }
  });
  // A masked upload carries one more segment: the masked weight word.
  const segments = deltaSegments(exp.encoding, exp.tensors.map((t) => t.elements));
  const expectedBytes = segmentsBytes(segments);
  const totalBytes = h.totalBytes;
  if (totalBytes !== expectedBytes) {
    throw new CoordinatorError('UPLOAD_INVALID', `totalBytes is ${totalBytes}, the declared tensors need ${expectedBytes}`);
  }
  const { samples, tokens } = h;
  const count = declaredCount(exp.weighting, { samples, tokens });
  if (!(count > 0)) throw new CoordinatorError('UPLOAD_INVALID', `weighting by ${exp.weighting} needs a positive count, got ${count}`);
  if (exp.tokenCap !== undefined && tokens > exp.tokenCap) {
    throw new CoordinatorError('BUDGET_EXCEEDED', `${tokens} tokens declared, more than the round's token budget plus one batch (${exp.tokenCap})`, { tokens, cap: exp.tokenCap });
  }
  // Refused, never clamped: a site claiming more than an honest one could would dictate the mean.
  if (count > exp.maxSiteWeight) {
    throw new CoordinatorError('WEIGHT_OUT_OF_RANGE', `a weight of ${count} ${exp.weighting} exceeds the run's maxSiteWeight ${exp.maxSiteWeight}`, { weight: count, maxSiteWeight: exp.maxSiteWeight });
  }
  const folded = validateFolded(h, exp, site, staleness);
  const w = uploadWeight(
    { count, staleness },
    folded.map((f) => ({ count: declaredCount(exp.weighting, f), staleness: f.staleness })),
    exp.maxSiteWeight,
  );
  if (!w.ok) throw new CoordinatorError(w.code === 'WEIGHT_OUT_OF_RANGE' ? 'WEIGHT_OUT_OF_RANGE' : 'UPLOAD_INVALID', w.issues.join('; '), { maxSiteWeight: exp.maxSiteWeight });
  validateTrainingReport(h, exp);
  const part = validatePart(h, segments, totalBytes);
  return {
    round,
    attempt: h.attempt,
    totalBytes,
    encoding: exp.encoding,
    segments,
    part,
    stripe: validateStripe(h, segments, part),
    chunkBytes: validateChunkBytes(h.chunkBytes, exp.maxChunkBytes),
    weight: w.value.weight,
    samples,
    tokens,
    steps: h.steps,
    trainLoss: Number.isFinite(h.trainLoss) ? h.trainLoss : Number.NaN,
    dataManifestSha256: h.dataManifestSha256,
    baseModelSha256: h.baseModelSha256,
    staleness,
    folded: folded.map((f, i) => ({ ...f, count: w.value.folded[i]! * w.value.foldScale })),
    trainStartedMs: h.trainStartedMs,
    trainFinishedMs: h.trainFinishedMs,
    appliedStaleness: h.appliedStalenessSteps,
    busyMs: h.busyMs,
    contentKey: contentKeyOf(h, exp.encoding),
  };
}

/** Most characters of a `contentId`, and the ones it may use. */
const CONTENT_ID = /^[0-9A-Za-z._:-]{1,128}$/;

/**
 * The identity of a named delta's bytes: every header field that describes them — all but the
 * attempt and the stream's own stripe, chunk size and digest mode — hashed. Plain encodings only: a masked
 * delta belongs to its attempt's keys, so its bytes never carry over.
 */
function contentKeyOf(h: UploadHeader, encoding: DeltaEncoding): string | undefined {
  if (h.contentId === '') return undefined;
  if (!CONTENT_ID.test(h.contentId)) throw new CoordinatorError('UPLOAD_INVALID', `contentId ${JSON.stringify(h.contentId.slice(0, 140))} is not 1..128 characters of [0-9A-Za-z._:-]`);
  if (encoding.startsWith('secagg')) throw new CoordinatorError('UPLOAD_INVALID', 'a masked delta cannot be named: its bytes belong to the attempt (contentId must be empty)');
  const { attempt: _a, stripeOffset: _o, stripeBytes: _b, chunkBytes: _c, wholeDigest: _w, ...described } = h;
  return createHash('sha256').update(canonicalJson(described)).digest('hex');
}

/**
 * What the header reports of the training beside its counts: the data manifest, the busy span, and
 * in an overlapped run the applied staleness, refused above the run's bound (`STALE_TRAINER`): a
 * trainer that applied the last sum that late trained too far from it.
 */
function validateTrainingReport(h: UploadHeader, exp: UploadExpectation): void {
  if (!/^([0-9a-f]{64})?$/.test(h.dataManifestSha256)) throw new CoordinatorError('UPLOAD_INVALID', 'dataManifestSha256 is not a SHA-256');
  if (h.trainFinishedMs < h.trainStartedMs) throw new CoordinatorError('UPLOAD_INVALID', `trainFinishedMs ${h.trainFinishedMs} is before trainStartedMs ${h.trainStartedMs}`);
  const limit = exp.maxAppliedSteps;
  if (limit !== undefined && h.appliedStalenessSteps > limit) {
    throw new CoordinatorError(
      'STALE_TRAINER',
      `the trainer applied round ${exp.modelRound}'s model ${h.appliedStalenessSteps} inner steps after its previous snapshot, more than the run's maxAppliedSteps ${limit}`,
      { round: exp.round, appliedStaleness: h.appliedStalenessSteps, limit },
    );
  }
}

/**
 * Rounds `base` lies behind the round's model: `BASE_UNKNOWN` for no committed model, `STALE_DELTA`
 * beyond maxStaleness. `part` goes into the error's context: a refused folded part leaves the site
 * in the round, free to send its fresh work alone (`isFoldRefusal`).
 */
function stalenessOf(base: string, exp: UploadExpectation, what: string, part: 'fresh' | 'folded'): number {
  const r = exp.bases.roundOf(base);
  if (r === undefined) {
    throw new CoordinatorError('BASE_UNKNOWN', `${what} was computed against model ${JSON.stringify(base.slice(0, 64))}, which is no committed model of run ${exp.runId}`, { part });
  }
  const staleness = exp.modelRound - r;
  if (staleness < 0 || staleness > exp.maxStaleness) {
    throw new CoordinatorError('STALE_DELTA', `${what} was computed against the model of round ${r}, ${staleness} rounds behind round ${exp.modelRound}'s (at most ${exp.maxStaleness}): drop it and train from the task's model`, {
      part,
      baseRound: r,
      modelRound: exp.modelRound,
      maxStaleness: exp.maxStaleness,
    });
  }
  return staleness;
}

/** Whether `e` refused an upload for one of its folded parts only: the fresh work may still come alone. */
export function isFoldRefusal(e: CoordinatorError): boolean {
  return e.context['part'] === 'folded';
}

/** The folded parts: bases known, distinct, strictly older than the fresh part's, not counted before. */
function validateFolded(h: UploadHeader, exp: UploadExpectation, site: string, freshStaleness: number): Omit<FoldedIntent, 'count'>[] {
  if (h.folded.length > exp.maxStaleness) throw new CoordinatorError('UPLOAD_INVALID', `${h.folded.length} folded parts, at most ${exp.maxStaleness} (the run's maxStaleness)`, { part: 'folded' });
  const seen = new Set<string>();
  return h.folded.map((f, i) => {
    const staleness = stalenessOf(f.baseModelSha256, exp, `folded part ${i}`, 'folded');
    if (staleness <= freshStaleness || seen.has(f.baseModelSha256)) {
      throw new CoordinatorError('UPLOAD_INVALID', `folded part ${i}'s base must be distinct and older than the fresh part's (staleness ${staleness}, fresh ${freshStaleness})`, { part: 'folded' });
    }
    seen.add(f.baseModelSha256);
    if (exp.bases.isCounted(site, f.baseModelSha256)) {
      throw new CoordinatorError('ALREADY_COUNTED', `folded part ${i}: ${site}'s work from the model of round ${exp.modelRound - staleness} was counted in a committed round already`, { part: 'folded', staleness });
    }
    return { baseModelSha256: f.baseModelSha256, staleness, samples: f.samples, tokens: f.tokens, steps: f.steps };
  });
}

/** Bytes the upload carries: the whole delta's, or an aggregator shard's part's. */
export function partBytes(intent: Pick<UploadIntent, 'part'>): number {
  return intent.part.end - intent.part.start;
}

/** Result of a complete, verified upload. */
export interface SpooledUpload {
  /** The spool of the whole delta; empty when the aggregator shards hold it as `parts`. */
  readonly path: string;
  readonly bytes: number;
  /** The delta's SHA-256; of parts held by shards, {@link partsSha256}. */
  readonly sha256: string;
  /** The parts the aggregator shards hold (issue 22), in shard order; absent for a delta the coordinator holds. */
  readonly parts?: readonly { readonly shard: string; readonly start: number; readonly end: number; readonly sha256: string }[];
  /** A secure upload in parts: its masked weight word, as the shard holding the last part reported it. */
  readonly weightWord?: Uint8Array;
}

/** The part the header carries: 0/0 is the whole delta; otherwise a non-empty range between values. */
function validatePart(h: UploadHeader, segments: readonly Segment[], total: number): UploadIntent['part'] {
  if (h.partStart === 0 && h.partEnd === 0) return { start: 0, end: total };
  const { partStart: start, partEnd: end } = h;
  if (!(start < end) || end > total) throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `part [${start}, ${end}) is empty or past the delta's ${total} bytes`, { start, end, total });
  if (!isUnitBoundary(segments, start) || !isUnitBoundary(segments, end)) throw new CoordinatorError('UPLOAD_INVALID', `part [${start}, ${end}) splits a value or int8 block`, { start, end });
  return { start, end };
}

/** The stripe the header names, inside the part it carries. */
export function validateStripe(h: UploadHeader, segments: readonly Segment[], part: UploadIntent['part']): UploadIntent['stripe'] {
  // Absent stripe fields (0/0/0) declare one stripe: the whole part.
  const count = h.stripeCount || 1;
  const start = !h.stripeCount && h.stripeBytes === 0 ? part.start : h.stripeOffset;
  const declared = h.stripeBytes;
  const size = part.end - part.start;
  const bytes = !h.stripeCount && declared === 0 ? size : declared;
  const what = part.start === 0 && part.end === h.totalBytes ? "the delta's" : `the part [${part.start}, ${part.end})'s`;
  if (count > MAX_STRIPES) throw new CoordinatorError('UPLOAD_INVALID', `${count} stripes declared, at most ${MAX_STRIPES}`);
  if (bytes <= 0 || start < part.start || start + bytes > part.end) {
    throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `stripe [${start}, ${start + bytes}) is empty or outside ${what} ${size} bytes`, { start, bytes, total: size });
  }
  if (!isUnitBoundary(segments, start) || !isUnitBoundary(segments, start + bytes)) {
    throw new CoordinatorError('UPLOAD_INVALID', `stripe [${start}, ${start + bytes}) splits a value or int8 block`, { start, bytes });
  }
  if (count === 1 && bytes !== size) throw new CoordinatorError('UPLOAD_INVALID', `a single stripe must carry all ${size} bytes, not ${bytes}`);
  return { start, end: start + bytes, count };
}

function validateChunkBytes(declared: number, max: number): number {
  if (declared === 0) return max;
  if (declared < 4 || declared > max) throw new CoordinatorError('CHUNK_OUT_OF_RANGE', `chunk size ${declared} outside 4..${max}`, { bytes: declared });
  return declared;
}

/** What an aggregator shard was told of one admitted upload (issue 22): the header its leader checked, with the shard's part. */
export interface AdmittedUpload {
  /** The header as the leader admitted it: its stripe and chunk fields are not compared. */
  readonly header: UploadHeader;
  /** The weight the leader computed from it. */
  readonly weight: number;
  readonly maxChunkBytes: number;
}

/**
 * The intent of a stream's `header` at an aggregator shard: the header the leader admitted for
 * the site, field for field but for the stream's own stripe, chunk size and digest mode (`UPLOAD_INVALID`
 * otherwise: a site cannot send a shard what its leader did not check), with its part and stripe.
 */
export function admittedIntent(h: UploadHeader, admitted: AdmittedUpload): UploadIntent {
  const a = admitted.header;
  const described = (x: UploadHeader): string => {
    const { stripeOffset: _o, stripeBytes: _b, stripeCount: _c, chunkBytes: _k, wholeDigest: _w, ...rest } = x;
    return canonicalJson(rest);
  };
  if (described(h) !== described(a)) {
    throw new CoordinatorError('UPLOAD_INVALID', `the header is not the one the coordinator admitted for round ${a.round}.${a.attempt} and part [${a.partStart}, ${a.partEnd})`, { round: h.round, attempt: h.attempt });
  }
  const encoding = a.encoding as DeltaEncoding;
  const segments = deltaSegments(encoding, a.tensors.map((t) => t.shape.reduce((n, d) => n * d, 1)));
  const part = validatePart(h, segments, h.totalBytes);
  return {
    round: h.round,
    attempt: h.attempt,
    totalBytes: h.totalBytes,
    weight: admitted.weight,
    samples: h.samples,
    tokens: h.tokens,
    steps: h.steps,
    trainLoss: Number.isFinite(h.trainLoss) ? h.trainLoss : Number.NaN,
    dataManifestSha256: h.dataManifestSha256,
    encoding,
    segments,
    part,
    stripe: validateStripe(h, segments, part),
    chunkBytes: validateChunkBytes(h.chunkBytes, admitted.maxChunkBytes),
    baseModelSha256: h.baseModelSha256,
    staleness: 0,
    folded: [],
    trainStartedMs: h.trainStartedMs,
    trainFinishedMs: h.trainFinishedMs,
    appliedStaleness: h.appliedStalenessSteps,
    busyMs: h.busyMs,
    contentKey: contentKeyOf(h, encoding),
  };
}
