/**
 * The site agent's wire edge: the one module that reads the coordinator's generated protobuf
 * messages (`*__Output`) and turns them into the agent's own types, checking them on the way in.
 * Everything behind it (the connection loop, the round job, the secure stages, transfers) sees
 * numbers where the wire has uint64 strings, and never a generated message.
 *
 * A message that breaks the wire contract (a uint64 that is no safe integer, a field the agent
 * needs left out) is refused here, not carried further as NaN: a `WIRE_INVALID` result, raised as
 * a SiteAgentError of that code ({@link wireError}) where a stream must end on it.
 */
import type * as grpc from '@grpc/grpc-js';
import type {
  ConsistencyTask__Output,
  EvalTask__Output,
  JoinResponse__Output,
  KeysTask__Output,
  ModelChunk__Output,
  ModelRef__Output,
  SharesTask__Output,
  Task__Output,
  TrainTask__Output,
  UnmaskTask__Output,
  UploadMessage,
  UploadQueued__Output,
  UploadReply__Output,
  UploadResult__Output,
} from '../proto/index.js';
import { crc32c as crc32cPortable } from '@node-rs/crc32';
import { WEIGHTINGS, err, nativeKernels, ok, type Err, type Ok, type Result, type Weighting } from '../aggregation/index.js';
import type { DeltaPartHash } from '../common/receipt.js';
import type { TaskTensor } from './encode.js';
import { SiteAgentError } from './errors.js';
import type { PeerAdvertisement, SecureParams, WireShare } from './secure/session.js';

/** CRC32C of a chunk: the native kernel where it is built (about four times as fast), else @node-rs/crc32. */
export function crc32c(data: Uint8Array): number {
  return (nativeKernels()?.crc32c ?? crc32cPortable)(data);
}

/** Which attempt of which round of which run a task belongs to. */
export interface AttemptRef {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
}

/** The key of an attempt: a job, a secure session and a saved shard are matched by it. */
export function attemptKey(a: AttemptRef): string {
  return `${a.runId}/${a.round}.${a.attempt}`;
}

/** A model the coordinator serves, by content. */
export interface ModelRef {
  readonly sha256: string;
  readonly sizeBytes: number;
}

/** Train a shard on the round's global model and upload its delta. */
export interface TrainTask extends AttemptRef {
  readonly kind: 'train';
  readonly globalModel: ModelRef;
  /** The round that produced `globalModel` (0: the initial model); receipts and scores name it. */
  readonly modelRound: number;
  readonly tensors: readonly TaskTensor[];
  /** The delta's wire encoding ("f32" when the coordinator names none). */
  readonly encoding: string;
  /** Training hyper-parameters, as the coordinator's JSON object; the runner validates them. */
  readonly trainConfig: Readonly<Record<string, unknown>>;
  /** Epoch milliseconds by which the shard must be trained; undefined when none is named. */
  readonly trainingDeadlineMs: number | undefined;
  /**
   * Epoch milliseconds after which the attempt takes no upload; undefined when none is named (an
   * upload is then tried until the coordinator refuses it).
   */
  readonly uploadDeadlineMs?: number | undefined;
  /**
   * Most rounds a part's base may lie behind `modelRound` (`run.maxStaleness`); older kept work is
   * dropped, not sent. 0 or absent (a coordinator before protocol version 4): nothing is folded.
   */
  readonly maxStaleness?: number;
  /**
   * What an upload's weight counts (`run.weighting`) and the most one site may declare
   * (`run.maxSiteWeight`): kept work is mixed into an upload by them. Absent when the coordinator
   * does not send them (empty, 0): a plain round then folds nothing.
   */
  readonly weighting?: Weighting | undefined;
  readonly maxSiteWeight?: number | undefined;
  /** The largest upload chunk the coordinator takes; undefined when it names none. */
  readonly maxChunkBytes: number | undefined;
  /** Upload streams this site may open at once (0 means 1). */
  readonly maxStreams: number;
  /** Whether to score the global model on held-out data before training. */
  readonly evaluate: boolean;
  /** Under secure aggregation: the shares neighbours sealed for this site, and who completed the exchange. */
  readonly shares: readonly WireShare[];
  readonly shareHolders: readonly string[];
}

/** Score a model after the last round (no round job carries it). */
export interface EvalTask {
  readonly kind: 'eval';
  readonly runId: string;
  readonly model: ModelRef;
  readonly modelRound: number;
  /** Epoch milliseconds the coordinator waits for the score until; undefined when none is named. */
  readonly deadlineMs: number | undefined;
}

/** The run finished with this model and asks for no score: contributors of its round sign receipts. */
export interface FinishedTask {
  readonly kind: 'finished';
  readonly runId: string;
  readonly model: ModelRef;
  readonly modelRound: number;
}

/** Stop whatever belongs to this attempt. */
export interface CancelTask extends AttemptRef {
  readonly kind: 'cancel';
  readonly reason: string;
}

/** Bonawitz et al. 2017, round 0: make and advertise this attempt's key pairs. */
export interface KeysStage extends AttemptRef {
  readonly kind: 'keys';
  readonly params: SecureParams;
}

/** Bonawitz et al. 2017, round 1: check the neighbours' advertisements and share the secrets. */
export interface SharesStage extends AttemptRef {
  readonly kind: 'shares';
  readonly advertisements: readonly PeerAdvertisement[];
}

/** Bonawitz et al. 2017, consistency check: sign the survivor list. */
export interface ConsistencyStage extends AttemptRef {
  readonly kind: 'consistency';
  readonly survivors: readonly string[];
  readonly dropped: readonly string[];
}

/** Bonawitz et al. 2017, round 3: reveal shares after enough matching signatures. */
export interface UnmaskStage extends AttemptRef {
  readonly kind: 'unmask';
  readonly survivors: readonly string[];
  readonly dropped: readonly string[];
  readonly signatures: readonly { readonly site: string; readonly signature: Uint8Array }[];
}

/** One step of secure aggregation at this site. */
export type SecureStage = KeysStage | SharesStage | ConsistencyStage | UnmaskStage;

/** Everything the coordinator's task stream can ask of a site. */
export type SiteTask = TrainTask | EvalTask | FinishedTask | CancelTask | SecureStage;

/** The code of every refusal at the wire edge. */
export type WireErrorCode = 'WIRE_INVALID';

/**
 * A task as decoded: the task (undefined when its kind is none this agent knows, which it ignores),
 * or the refusal, with the attempt it belongs to when that much could be read and the coordinator
 * waits for an answer on it (train tasks and secure stages).
 */
export type DecodedTask = Ok<SiteTask | undefined> | (Err<WireErrorCode> & { readonly attempt: AttemptRef | undefined });

/** The error a refusal at the wire edge is raised as, where one must be thrown. */
export function wireError(refusal: Err<WireErrorCode>): SiteAgentError {
  return new SiteAgentError(refusal.code, `the coordinator's message breaks the wire contract: ${refusal.issues.join('; ')}`, false);
}

/** Decodes one message of the task stream; never throws. */
export function taskFromWire(task: Task__Output): DecodedTask {
  // The attempt is read first, so a refusal of the rest can still be answered on it.
  let attempt: AttemptRef | undefined;
  try {
    switch (task.kind) {
      case undefined:
        return ok(undefined);
      case 'eval':
        return ok(decodeEval(present(task.eval, 'eval')));
      case 'finished': {
        const f = present(task.finished, 'finished');
        if (f.runId === '') throw new Refusal('a finished task without its run id');
        return ok({ kind: 'finished', runId: f.runId, model: decodeModel(f.model, 'model'), modelRound: u64(f.modelRound, 'modelRound') });
      }
      case 'cancel': {
        const c = present(task.cancel, 'cancel');
        return ok({ kind: 'cancel', ...decodeAttempt(c), reason: c.reason });
      }
      case 'train': {
        const t = present(task.train, 'train');
        attempt = decodeAttempt(t);
        return ok(decodeTrain(t, attempt));
      }
      case 'keys': {
        const t = present(task.keys, 'keys');
        attempt = decodeAttempt(t);
        return ok(decodeKeys(t, attempt));
      }
      case 'shares': {
        const t = present(task.shares, 'shares');
        attempt = decodeAttempt(t);
        return ok(decodeShares(t, attempt));
      }
      case 'consistency': {
        const t = present(task.consistency, 'consistency');
        attempt = decodeAttempt(t);
        return ok(decodeConsistency(t, attempt));
      }
      case 'unmask': {
        const t = present(task.unmask, 'unmask');
        attempt = decodeAttempt(t);
        return ok(decodeUnmask(t, attempt));
      }
    }
  } catch (e) {
    if (!(e instanceof Refusal)) throw e;
    return { ...err('WIRE_INVALID', e.message, { kind: task.kind }), attempt };
  }
}

/** The body of the task's oneof, which proto-loader sets whenever it names the kind. */
function present<M>(body: M | null | undefined, kind: string): M {
  if (!body) throw new Refusal(`a ${kind} task without its body`);
  return body;
}

function decodeAttempt(m: { runId: string; round: string; attempt: number }): AttemptRef {
  if (m.runId === '') throw new Refusal('a task without its run id');
  return { runId: m.runId, round: u64(m.round, 'round'), attempt: m.attempt };
}

function decodeTrain(t: TrainTask__Output, a: AttemptRef): TrainTask {
  const deadline = u64(t.trainingDeadlineMs, 'trainingDeadlineMs');
  const uploadDeadline = u64(t.uploadDeadlineMs, 'uploadDeadlineMs');
  return {
    kind: 'train',
    ...a,
    globalModel: decodeModel(t.globalModel, 'globalModel'),
    modelRound: u64(t.modelRound, 'modelRound'),
    tensors: t.tensors.map((x) => ({ name: x.name, dtype: x.dtype, shape: x.shape.map((d) => u64(d, `shape of ${x.name}`)) })),
    encoding: t.encoding?.name || 'f32',
    trainConfig: decodeTrainConfig(t.trainConfigJson),
    trainingDeadlineMs: deadline > 0 ? deadline : undefined,
    uploadDeadlineMs: uploadDeadline > 0 ? uploadDeadline : undefined,
    maxStaleness: t.maxStaleness,
    weighting: t.weighting === '' ? undefined : decodeWeighting(t.weighting, 'a train task'),
    maxSiteWeight: decodeMaxSiteWeight(t.maxSiteWeight),
    maxChunkBytes: t.maxChunkBytes > 0 ? t.maxChunkBytes : undefined,
    maxStreams: t.maxStreams,
    evaluate: t.evaluate,
    shares: t.shares.map((x) => ({ from: x.fromSite, to: x.toSite, nonce: x.nonce, ciphertext: x.ciphertext })),
    shareHolders: t.shareHolders,
  };
}

function decodeTrainConfig(json: string): Readonly<Record<string, unknown>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json || '{}');
  } catch (err) {
    throw new Refusal(`trainConfigJson is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Refusal('trainConfigJson is not a JSON object');
  return parsed as Record<string, unknown>;
}

function decodeEval(e: EvalTask__Output): EvalTask {
  if (e.runId === '') throw new Refusal('an eval task without its run id');
  const deadline = u64(e.deadlineMs, 'deadlineMs');
  return { kind: 'eval', runId: e.runId, model: decodeModel(e.model, 'model'), modelRound: u64(e.modelRound, 'modelRound'), deadlineMs: deadline > 0 ? deadline : undefined };
}

function decodeKeys(t: KeysTask__Output, a: AttemptRef): KeysStage {
  const p = t.params;
  if (!p) throw new Refusal('a keys task without its secure-aggregation parameters');
  // The weight word divides by it: a coordinator's nonsense must not become a NaN weight.
  if (!(Number.isFinite(p.maxWeight) && p.maxWeight >= 1)) throw new Refusal(`a keys task whose maxWeight ${p.maxWeight} is not a number ≥ 1`);
  // Words are 16 or 32 bits; any other width would mask in a ring the coordinator does not sum in.
  if (p.modulusBits !== 0 && p.modulusBits !== 16 && p.modulusBits !== 32) throw new Refusal(`a keys task whose modulus is 2^${p.modulusBits} (words are 16 or 32 bits)`);
  const params: SecureParams = {
    threshold: p.threshold,
    quantBits: p.quantBits,
    // 0 (unset) keeps the protocol's default modulus.
    modulusBits: p.modulusBits === 16 ? 16 : 32,
    clip: p.clip,
    maxSiteWeight: p.maxWeight,
    weighting: p.weighting === '' ? 'samples' : decodeWeighting(p.weighting, 'a keys task'),
    graphSeed: p.graphSeed,
    degree: p.degree,
    roster: p.roster,
  };
  return { kind: 'keys', ...a, params };
}

/** `run.weighting` as a task carries it (a keys task's empty one, from coordinators that did not send it, reads as samples). */
function decodeWeighting(w: string, what: string): Weighting {
  const known = WEIGHTINGS.find((x) => x === w);
  if (!known) throw new Refusal(`${what} weighting by ${JSON.stringify(w)}, not one of ${WEIGHTINGS.join(', ')}`);
  return known;
}

/** A train task's `max_site_weight`: 0 is "not sent"; anything else must be a number ≥ 1, or the mix would divide by nonsense. */
function decodeMaxSiteWeight(m: number): number | undefined {
  if (m === 0) return undefined;
  if (!(Number.isFinite(m) && m >= 1)) throw new Refusal(`a train task whose maxSiteWeight ${m} is not a number ≥ 1`);
  return m;
}

function decodeShares(t: SharesTask__Output, a: AttemptRef): SharesStage {
  const advertisements = t.advertisements.map((x) => ({ site: x.siteId, cPk: x.cPublicKey, sPk: x.sPublicKey, signature: x.signature, certificatePem: x.certificatePem }));
  return { kind: 'shares', ...a, advertisements };
}

function decodeConsistency(t: ConsistencyTask__Output, a: AttemptRef): ConsistencyStage {
  return { kind: 'consistency', ...a, survivors: t.survivors, dropped: t.dropped };
}

function decodeUnmask(t: UnmaskTask__Output, a: AttemptRef): UnmaskStage {
  return { kind: 'unmask', ...a, survivors: t.survivors, dropped: t.dropped, signatures: t.signatures.map((x) => ({ site: x.siteId, signature: x.signature })) };
}

function decodeModel(m: ModelRef__Output | null, field: string): ModelRef {
  if (!m) throw new Refusal(`a task without its ${field}`);
  return { sha256: m.sha256, sizeBytes: u64(m.sizeBytes, `${field}.sizeBytes`) };
}

/** What the coordinator answered to `Join`. */
export interface JoinInfo {
  readonly federation: string;
  readonly coordinatorVersion: string;
  /** The heartbeat interval the coordinator asks for (0: it names none). */
  readonly heartbeatIntervalMs: number;
}

/** Decodes the answer to `Join`. */
export function joinFromWire(res: JoinResponse__Output): JoinInfo {
  const asked = Number(res.heartbeatIntervalMs);
  return { federation: res.federation, coordinatorVersion: res.coordinatorVersion, heartbeatIntervalMs: Number.isSafeInteger(asked) && asked > 0 ? asked : 0 };
}

/** One chunk of a model download. */
export interface ModelChunk {
  readonly offset: number;
  readonly data: Buffer;
  /** CRC32C (Castagnoli) of `data`. */
  readonly crc32c: number;
}

/** The chunks of one `Download` stream, decoded; a chunk that breaks the contract ends it with WIRE_INVALID. */
export async function* modelChunksFromWire(call: AsyncIterable<ModelChunk__Output>): AsyncGenerator<ModelChunk> {
  for await (const chunk of call) {
    const offset = u64Result(chunk.offset, 'offset');
    if (!offset.ok) throw wireError(offset);
    yield { offset: offset.value, data: chunk.data, crc32c: chunk.crc32c };
  }
}

/** The coordinator's verdict on an upload stream. */
export interface UploadOutcome {
  readonly accepted: boolean;
  readonly receivedBytes: number;
  readonly message: string;
  /** True on the stream whose stripe completed the whole delta. */
  readonly complete: boolean;
  /** SHA-256 of the whole encoded delta, as spooled; of a delta uploaded in parts, that of its parts' hashes (`partsSha256`). */
  readonly sha256: string;
  /** A delta uploaded in parts: each part and the SHA-256 its aggregator shard verified it under. */
  readonly parts?: readonly DeltaPartHash[];
}

/** The coordinator holds an upload stream back until its shared in-flight budget has room. */
export interface UploadQueue {
  readonly budgetBytes: number;
  readonly usedBytes: number;
  readonly waitingStreams: number;
}

/** One reply on an upload stream. */
export type UploadReply =
  /** `wholeDigest`: the receiver took the offer to prove the stripe with one SHA-256 in the trailer. */
  | { readonly kind: 'accepted'; readonly offset: number; readonly windowBytes: number; readonly wholeDigest: boolean }
  | { readonly kind: 'ack'; readonly offset: number }
  | { readonly kind: 'resend'; readonly offset: number }
  | { readonly kind: 'result'; readonly outcome: UploadOutcome }
  | { readonly kind: 'queued'; readonly queue: UploadQueue };

/** An `Upload` stream: the agent writes generated messages and reads the replies through {@link uploadReplyFromWire}. */
export type UploadStream = grpc.ClientDuplexStream<UploadMessage, UploadReply__Output>;

/** Decodes one reply on an upload stream (undefined: a kind this agent does not know). */
export function uploadReplyFromWire(r: UploadReply__Output): Result<UploadReply | undefined, WireErrorCode> {
  try {
    if (r.accepted) return ok({ kind: 'accepted', offset: u64(r.accepted.offset, 'offset'), windowBytes: u64(r.accepted.windowBytes, 'windowBytes'), wholeDigest: r.accepted.wholeDigest ?? false });
    if (r.ack) return ok({ kind: 'ack', offset: u64(r.ack.offset, 'offset') });
    if (r.resend) return ok({ kind: 'resend', offset: u64(r.resend.offset, 'offset') });
    if (r.result) return ok({ kind: 'result', outcome: decodeUploadResult(r.result) });
    if (r.queued) return ok({ kind: 'queued', queue: decodeUploadQueued(r.queued) });
    return ok(undefined);
  } catch (e) {
    if (!(e instanceof Refusal)) throw e;
    return err('WIRE_INVALID', e.message, { kind: r.kind });
  }
}

function decodeUploadResult(r: UploadResult__Output): UploadOutcome {
  return { accepted: r.accepted, receivedBytes: u64(r.receivedBytes, 'receivedBytes'), message: r.message, complete: r.complete, sha256: r.sha256 };
}

function decodeUploadQueued(q: UploadQueued__Output): UploadQueue {
  return { budgetBytes: u64(q.budgetBytes, 'budgetBytes'), usedBytes: u64(q.usedBytes, 'usedBytes'), waitingStreams: q.waitingStreams };
}

/**
 * A uint64 as the wire carries it (proto-loader's decimal string) as a safe integer: anything
 * else, say a value past 2^53 that a Number would silently round, is refused.
 */
function u64Result(value: string, field: string): Result<number, WireErrorCode> {
  const n = /^\d{1,16}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n)) return err('WIRE_INVALID', `${field} ${JSON.stringify(value.slice(0, 40))} is not a uint64 this agent can hold exactly`, { field });
  return ok(n);
}

function u64(value: string, field: string): number {
  const n = u64Result(value, field);
  if (!n.ok) throw new Refusal(n.issues.join('; '));
  return n.value;
}

/**
 * How a decoder deep inside a message gives up; the exported decoders turn it into their result.
 * Final, never retried: the coordinator would send the same message again.
 */
class Refusal extends Error {}
