/**
 * The coordinator's wire edge: generated protobuf messages in, domain values out (and tasks the
 * other way). Every number that travels as a 64-bit string becomes a safe integer here or the call
 * is refused, so nothing behind the services (the secure round, uploads, receipts) handles a
 * generated `__Output` type or calls `Number()` on a wire field.
 */
import type * as grpc from '@grpc/grpc-js';
import { crc32c as crc32cPortable } from '@node-rs/crc32';
import { nativeKernels } from '../../aggregation/index.js';
import { isSha256 } from '../../common/files.js';
import { codePointName, findControl, printable } from '../../common/text.js';
import { usageProblem, usageToWire, type RoundUsage } from '../../common/usage.js';
import { deltaProblem } from '../../common/receipt.js';
import type {
  EvalReport__Output,
  KeyAdvertisement__Output,
  RoundReceipt__Output,
  RoundUsage__Output,
  UsageRow as UsageRowWire,
  SharesSubmission__Output,
  SurvivorSignature__Output,
  Task,
  TrainingFailure__Output,
  UnmaskResponse__Output,
  UploadHeader__Output,
  UploadMessage__Output,
  UploadReply,
  ShardAggregate,
} from '../../proto/index.js';
import type { SubmittedReceipt } from '../audit/receipts.js';
import type { UsageRow } from '../audit/usage.js';
import { CoordinatorError, type CoordinatorErrorCode } from '../core/errors.js';
import type { AttemptRef, KeyAdvertisement, SharesSubmission, SurvivorSignature, UnmaskResponse } from '../secure/messages.js';
import type { EvalReport } from '../shell/evals.js';
import type { ShardAggregation } from '../shell/ports.js';
import type { SiteTask } from '../sites/registry.js';
import type { UploadFrame, UploadHeader } from '../upload/frames.js';

/** CRC32C of a chunk: the native kernel where it is built (about four times as fast), else @node-rs/crc32. */
export function crc32c(data: Uint8Array): number {
  return (nativeKernels()?.crc32c ?? crc32cPortable)(data);
}

const U64 = /^\d{1,16}$/;
/** A run id, as `runSchema` defines it. */
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A uint64 field (a decimal string on the wire) as a safe integer; refused with `code` otherwise. */
export function u64(value: string, field: string, code: CoordinatorErrorCode = 'BAD_REQUEST'): number {
  if (!U64.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new CoordinatorError(code, `${field} is not a valid integer: ${JSON.stringify(value.slice(0, 40))}`);
  }
  return Number(value);
}

function attemptRef(m: { runId: string; round: string; attempt: number }): AttemptRef {
  return { runId: m.runId, round: u64(m.round, 'round'), attempt: m.attempt };
}

// ------------------------------------------------------------------ free text

/**
 * Longest free-text fields, in characters. A label is written by fedhpc's own software (agent
 * version, heartbeat activity, failure code); a line is typed by a person (an admin's reason, a run
 * file's name); a message relays what a trainer or runner printed.
 */
export const TEXT_LIMITS = { label: 64, line: 512, message: 1024 } as const;

/** A label: printable ASCII, at most {@link TEXT_LIMITS}.label characters, or TEXT_INVALID. */
export function labelFromWire(value: string, field: string): string {
  if (value.length > TEXT_LIMITS.label) throw new CoordinatorError('TEXT_INVALID', `${field} must be at most ${TEXT_LIMITS.label} characters, got ${value.length}`, { field });
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) throw new CoordinatorError('TEXT_INVALID', `${field} must be printable ASCII; character ${i} is ${codePointName(value.codePointAt(i) ?? c)}`, { field });
  }
  return value;
}

/**
 * One line of text: any character but the controls of common/text.ts (C0 with tab and newline,
 * DEL, C1, bidi controls), at most {@link TEXT_LIMITS}.line characters, or TEXT_INVALID. Refused
 * rather than escaped: whoever typed it can type it again, and the journal keeps what they typed.
 */
export function lineFromWire(value: string, field: string): string {
  if (value.length > TEXT_LIMITS.line) throw new CoordinatorError('TEXT_INVALID', `${field} must be at most ${TEXT_LIMITS.line} characters, got ${value.length}`, { field });
  const bad = findControl(value);
  if (bad) throw new CoordinatorError('TEXT_INVALID', `${field} must be one line without control or bidi characters; character ${bad.index} is ${codePointName(bad.codePoint)}`, { field });
  return value;
}

/**
 * A message relayed from elsewhere (what a trainer printed when it failed): escaped, not refused,
 * since an honest site cannot choose what its trainer prints and refusing would lose the report.
 * Controls become visible escapes (`printable`); beyond {@link TEXT_LIMITS}.message characters it
 * is cut, and says so.
 */
export function messageFromWire(value: string): string {
  const text = printable(value);
  if (text.length <= TEXT_LIMITS.message) return text;
  return `${printable(text.slice(0, TEXT_LIMITS.message))}… (${text.length} characters)`;
}

// ------------------------------------------------------------------ site reports

/** A site's failure report: the attempt it gives up, and why (code and message checked as above). */
export function failureFromWire(m: TrainingFailure__Output): { round: number; attempt: number; code: string; message: string } {
  return { round: u64(m.round, 'round'), attempt: m.attempt, code: labelFromWire(m.code, 'failure code'), message: messageFromWire(m.message) };
}

/**
 * A site's score of a model, checked for what the report alone can tell (EVAL_INVALID otherwise):
 * a run id and a SHA-256, a loss that is finite and at least 0, samples a positive safe integer.
 * Whether the site was asked, and for how many samples at most, is the tracker's to say.
 */
export function evalReportFromWire(m: EvalReport__Output): EvalReport {
  const invalid = (why: string): CoordinatorError => new CoordinatorError('EVAL_INVALID', `evaluation report refused: ${why}`);
  if (!RUN_ID.test(m.runId)) throw invalid(`run id ${JSON.stringify(m.runId.slice(0, 80))} is not a run id`);
  if (!isSha256(m.modelSha256)) throw invalid('modelSha256 is not a SHA-256');
  const modelRound = u64(m.modelRound, 'modelRound', 'EVAL_INVALID');
  if (!Number.isFinite(m.loss) || m.loss < 0) throw invalid(`loss must be a finite number of at least 0, got ${m.loss}`);
  const samples = u64(m.samples, 'samples', 'EVAL_INVALID');
  if (samples < 1) throw invalid('samples must be a positive integer, got 0');
  // -0 would read back from the journal as 0: one zero, so figures agree before and after a restart.
  return { runId: m.runId, modelRound, modelSha256: m.modelSha256, loss: m.loss === 0 ? 0 : m.loss, samples };
}

// ------------------------------------------------------------------ SecAgg+ stages

/** Round 0's advertisement. */
export function keyAdvertisementFromWire(m: KeyAdvertisement__Output): KeyAdvertisement {
  return { ...attemptRef(m), siteId: m.siteId, cPublicKey: m.cPublicKey, sPublicKey: m.sPublicKey, signature: m.signature, certificatePem: m.certificatePem };
}

/** Round 1's sealed shares. */
export function sharesSubmissionFromWire(m: SharesSubmission__Output): SharesSubmission {
  return { ...attemptRef(m), shares: m.shares.map((s) => ({ fromSite: s.fromSite, toSite: s.toSite, nonce: s.nonce, ciphertext: s.ciphertext })) };
}

/** The consistency check's signature. */
export function survivorSignatureFromWire(m: SurvivorSignature__Output): SurvivorSignature {
  return { ...attemptRef(m), siteId: m.siteId, signature: m.signature };
}

/** Round 3's revealed shares. */
export function unmaskResponseFromWire(m: UnmaskResponse__Output): UnmaskResponse {
  return { ...attemptRef(m), shares: m.shares.map((r) => ({ owner: r.owner, kind: r.kind, x: r.x, y: r.y })) };
}

// ------------------------------------------------------------------ receipts

/** A site's receipt of a committed round: every field has a shape, or the call is refused. */
export function receiptFromWire(m: RoundReceipt__Output): SubmittedReceipt {
  const round = Number(m.round);
  if (!RUN_ID.test(m.runId)) throw new CoordinatorError('BAD_REQUEST', `receipt run id ${JSON.stringify(m.runId.slice(0, 80))} is not a run id`);
  if (!Number.isSafeInteger(round) || round < 1) throw new CoordinatorError('BAD_REQUEST', `receipt round must be a positive integer, got ${m.round}`);
  for (const [k, v] of [['parentSha256', m.parentSha256], ['modelSha256', m.modelSha256]] as const) {
    if (!isSha256(v)) throw new CoordinatorError('BAD_REQUEST', `receipt ${k} is not a SHA-256`);
  }
  if (m.dataManifestSha256 !== '' && !isSha256(m.dataManifestSha256)) throw new CoordinatorError('BAD_REQUEST', 'receipt dataManifestSha256 is not a SHA-256');
  if (m.signature.length === 0 || m.signature.length > 256) throw new CoordinatorError('BAD_REQUEST', `receipt signature must be 1..256 bytes, got ${m.signature.length}`);
  if (!m.usage) throw new CoordinatorError('BAD_REQUEST', 'receipt carries no usage (required since protocol version 6; `unknown` with a reason when not measured)');
  const usage = usageFromWire(m.usage);
  const base = { runId: m.runId, round, parentSha256: m.parentSha256, modelSha256: m.modelSha256, dataManifestSha256: m.dataManifestSha256, signature: Buffer.from(m.signature), usage };
  if (m.deltaSha256 === '') {
    if (m.deltaParts.length > 0) throw new CoordinatorError('BAD_REQUEST', 'receipt names delta parts without the delta SHA-256');
    return base;
  }
  const delta = { sha256: m.deltaSha256, parts: m.deltaParts.map((p, i) => ({ start: u64(p.start, `deltaParts[${i}].start`, 'BAD_REQUEST'), end: u64(p.end, `deltaParts[${i}].end`, 'BAD_REQUEST'), sha256: p.sha256 })) };
  const problem = deltaProblem(delta);
  if (problem !== undefined) throw new CoordinatorError('BAD_REQUEST', `receipt ${problem}`);
  return { ...base, delta };
}

/** A receipt's usage: counts as safe integers and a usage a site may sign (common/usage.ts), or BAD_REQUEST. */
export function usageFromWire(m: RoundUsage__Output): RoundUsage {
  const n = (value: string, field: string): number => u64(value, field, 'BAD_REQUEST');
  const usage = {
    source: m.source as RoundUsage['source'],
    gpus: m.gpus,
    wallMs: n(m.wallMs, 'usage.wallMs'),
    allocatedGpuMs: n(m.allocatedGpuMs, 'usage.allocatedGpuMs'),
    trainingGpuMs: n(m.trainingGpuMs, 'usage.trainingGpuMs'),
    jobs: m.jobs,
    reason: m.reason,
  };
  const problem = usageProblem(usage);
  if (problem !== undefined) throw new CoordinatorError('BAD_REQUEST', `receipt ${problem}`);
  return usage;
}

/** A usage row of `admin usage` as the wire carries it. */
export function usageRowToWire(r: UsageRow): UsageRowWire {
  return {
    runId: r.runId,
    siteId: r.site,
    rounds: r.rounds,
    roundsWithoutReceipt: r.roundsWithoutReceipt,
    roundsUnknown: r.roundsUnknown,
    allocatedGpuMs: String(r.allocatedGpuMs),
    trainingGpuMs: String(r.trainingGpuMs),
    sources: r.sources.join(','),
    perRound: r.perRound.map((p) => ({ round: String(p.round), committedMs: String(p.committedMs), usage: p.usage ? usageToWire(p.usage) : null })),
  };
}

// ------------------------------------------------------------------ uploads

/** An `Upload` call as its handler holds it: frames come in through {@link uploadFrameFromWire}. */
export type UploadCall = grpc.ServerDuplexStream<UploadMessage__Output, UploadReply>;

/** An upload header with its counts as safe integers (UPLOAD_INVALID otherwise). */
export function uploadHeaderFromWire(h: UploadHeader__Output): UploadHeader {
  const n = (value: string, field: string): number => u64(value, field, 'UPLOAD_INVALID');
  return {
    runId: h.runId,
    round: n(h.round, 'round'),
    attempt: h.attempt,
    baseModelSha256: h.baseModelSha256,
    encoding: h.encoding?.name,
    tensors: h.tensors.map((t, i) => ({ name: t.name, dtype: t.dtype, shape: t.shape.map((d) => n(d, `tensors[${i}].shape`)) })),
    totalBytes: n(h.totalBytes, 'totalBytes'),
    samples: n(h.samples, 'samples'),
    tokens: n(h.tokens, 'tokens'),
    steps: n(h.steps, 'steps'),
    trainLoss: h.trainLoss,
    dataManifestSha256: h.dataManifestSha256,
    stripeOffset: n(h.stripeOffset ?? '0', 'stripeOffset'),
    stripeBytes: n(h.stripeBytes ?? '0', 'stripeBytes'),
    stripeCount: h.stripeCount ?? 0,
    chunkBytes: h.chunkBytes ?? 0,
    partStart: n(h.partStart ?? '0', 'partStart'),
    partEnd: n(h.partEnd ?? '0', 'partEnd'),
    trainStartedMs: n(h.trainStartedMs ?? '0', 'trainStartedMs'),
    trainFinishedMs: n(h.trainFinishedMs ?? '0', 'trainFinishedMs'),
    folded: (h.folded ?? []).map((f, i) => ({
      baseModelSha256: f.baseModelSha256,
      samples: n(f.samples, `folded[${i}].samples`),
      tokens: n(f.tokens, `folded[${i}].tokens`),
      steps: n(f.steps, `folded[${i}].steps`),
    })),
    appliedStalenessSteps: h.appliedStalenessSteps ?? 0,
    busyMs: n(h.busyMs ?? '0', 'busyMs'),
    contentId: h.contentId ?? '',
    wholeDigest: h.wholeDigest ?? false,
  };
}

/**
 * One message of an upload stream. A chunk's offset is taken as sent (the stream checks it against
 * what it expects and asks for a resend or refuses: CHUNK_OUT_OF_RANGE).
 */
export function uploadFrameFromWire(m: UploadMessage__Output): UploadFrame {
  if (m.kind === 'header' && m.header) return { kind: 'header', header: uploadHeaderFromWire(m.header) };
  if (m.kind === 'chunk' && m.chunk) return { kind: 'chunk', offset: Number(m.chunk.offset), data: m.chunk.data, crc32c: m.chunk.crc32c };
  if (m.kind === 'digest' && m.digest) return { kind: 'digest', tensor: m.digest.tensor, sha256: m.digest.sha256 };
  if (m.kind === 'trailer' && m.trailer) return { kind: 'trailer', sha256: m.trailer.sha256 };
  return { kind: 'empty' };
}

// ------------------------------------------------------------------ tasks (out)

/** Converts a domain task to its wire form. */
export function taskToWire(task: SiteTask): Task {
  switch (task.kind) {
    case 'train':
      return {
        train: {
          runId: task.runId,
          round: task.round,
          attempt: task.attempt,
          globalModel: { sha256: task.model.sha256, sizeBytes: task.model.sizeBytes },
          modelRound: task.modelRound,
          tensors: task.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] })),
          encoding: { name: task.encoding },
          trainConfigJson: JSON.stringify(task.train),
          trainingDeadlineMs: task.trainingDeadlineMs,
          uploadDeadlineMs: task.uploadDeadlineMs,
          maxChunkBytes: task.maxChunkBytes,
          maxStreams: task.maxStreams ?? 1,
          maxStaleness: task.maxStaleness ?? 0,
          weighting: task.weighting ?? '',
          maxSiteWeight: task.maxSiteWeight ?? 0,
          evaluate: task.evaluate,
          shares: task.shares.map((x) => ({ fromSite: x.from, toSite: x.to, nonce: x.nonce, ciphertext: x.ciphertext })),
          shareHolders: [...task.shareHolders],
        },
      };
    case 'eval':
      return {
        eval: {
          runId: task.runId,
          model: { sha256: task.model.sha256, sizeBytes: task.model.sizeBytes },
          modelRound: task.modelRound,
          deadlineMs: task.deadlineMs,
        },
      };
    case 'finished':
      return { finished: { runId: task.runId, model: { sha256: task.model.sha256, sizeBytes: task.model.sizeBytes }, modelRound: task.modelRound } };
    case 'cancel':
      return { cancel: { runId: task.runId, round: task.round, attempt: task.attempt, reason: task.reason } };
    case 'keys': {
      const p = task.params;
      return {
        keys: {
          runId: task.runId,
          round: task.round,
          attempt: task.attempt,
          params: {
            threshold: p.threshold,
            quantBits: p.quantBits,
            modulusBits: p.modulusBits,
            clip: p.clip,
            maxWeight: p.maxSiteWeight,
            weighting: p.weighting,
            graphSeed: p.graphSeed,
            degree: p.degree,
            roster: [...p.roster],
          },
        },
      };
    }
    case 'shares':
      return {
        shares: {
          runId: task.runId,
          round: task.round,
          attempt: task.attempt,
          advertisements: task.adverts.map((a) => ({
            runId: task.runId,
            round: task.round,
            attempt: task.attempt,
            siteId: a.site,
            cPublicKey: a.cPk,
            sPublicKey: a.sPk,
            signature: a.signature,
            certificatePem: a.certificatePem,
          })),
        },
      };
    case 'consistency':
      return { consistency: { runId: task.runId, round: task.round, attempt: task.attempt, survivors: [...task.survivors], dropped: [...task.dropped] } };
    case 'unmask':
      return {
        unmask: {
          runId: task.runId,
          round: task.round,
          attempt: task.attempt,
          survivors: [...task.survivors],
          dropped: [...task.dropped],
          signatures: task.signatures.map((x) => ({ runId: task.runId, round: task.round, attempt: task.attempt, siteId: x.site, signature: x.signature })),
        },
      };
  }
}

/** An aggregation asked of a shard (issue 22) as the wire's `ShardAggregate`. */
export function shardAggregationToWire(a: ShardAggregation): ShardAggregate {
  return {
    runId: a.runId,
    round: String(a.round),
    attempt: a.attempt,
    globalModelSha256: a.globalModelSha256,
    previousStateSha256: a.previousStateSha256 ?? '',
    optimizerJson: JSON.stringify({ name: a.optimizer.name, ...a.optimizer.params }),
    step: String(a.step),
    inputs: a.inputs.map((i) => ({ siteId: i.site, weight: i.weight, path: i.path, encoding: i.encoding, onShard: i.onShard })),
    files: a.stage.files.map((f) => ({ slot: f.slot, path: f.path, size: String(f.size), tensors: f.tensors.map((t) => ({ byteOffset: String(t.byteOffset), dtype: t.dtype })) })),
    sliceElements: a.sliceElements,
    unmask: a.unmask
      ? {
          selfSeeds: a.unmask.plan.selfSeeds.map((s) => Buffer.from(s)),
          droppedPairs: a.unmask.plan.droppedPairs.map((p) => ({ survivor: p.survivor, dropped: p.dropped, seed: Buffer.from(p.seed) })),
          clip: a.unmask.plan.clip,
          quantBits: a.unmask.plan.quantBits,
          modulusBits: a.unmask.plan.modulusBits,
          weightSum: a.unmask.weightSum,
        }
      : null,
    aggregatorJson: JSON.stringify(a.aggregator),
  };
}

