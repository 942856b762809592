/**
 * Moving deltas, and the retries every transfer shares (downloads of the global model are
 * ./download.ts). Uploads split the encoded delta into stripes, each on its own stream and resumed
 * from the coordinator's acknowledged offset after a break; a shared pacer keeps all stripes within
 * the site's rate limit. Idle (no-progress) timeouts end stalled transfers.
 */
import * as grpc from '@grpc/grpc-js';
import { backoffDelay, sleep } from '../common/backoff.js';
import type { SiteServiceClient, UploadAdmission__Output, UploadMessage } from '../proto/index.js';
import { isUnitBoundary } from '../aggregation/index.js';
import type { DeltaEncoder } from './encode.js';
import { SiteAgentError } from './errors.js';
import { classifyFailure } from './retry.js';
import { callsBackAfterWrite } from './client.js';
import { WholeStripeDigest, sendStripe } from './upload-stripe.js';
import { partsSha256 } from '../common/receipt.js';
import type { UploadOutcome, UploadQueue } from './wire.js';

/** Bytes moved, for progress reports. */
export type TransferProgress = (done: number, total: number) => void;

/** How transfers behave when the network does not. */
/** How long a transfer may stall and how it backs off: from the site config, never a second default. */
export interface TransferPolicy {
  /** A transfer that makes no progress for this long fails (`transfer.idleTimeoutS`). */
  readonly idleMs: number;
  /** Backoff between tries (`reconnect`). */
  readonly retry: { readonly initialMs: number; readonly maxMs: number };
}

/** The transfer policy of a resolved site config. */
export function transferPolicy(config: { transfer: { idleTimeoutS: number }; reconnect: { initialMs: number; maxMs: number } }): TransferPolicy {
  return { idleMs: config.transfer.idleTimeoutS * 1000, retry: config.reconnect };
}

/**
 * Runs `attempt` until it succeeds, retrying with backoff after transient failures while progress
 * (as `position()` reports it) is made at least every `idleMs`.
 */
export async function withRetries<T>(what: string, policy: TransferPolicy, signal: AbortSignal, position: () => number, attempt: () => Promise<T>): Promise<T> {
  let failures = 0;
  let lastPos = position();
  let lastProgress = Date.now();
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      signal.throwIfAborted();
      const verdict = classifyFailure(err);
      // A session the coordinator no longer knows needs a new Join first, which is the agent's to
      // make (it drops the round's work and joins again): retrying here would only stall.
      if (!verdict.retryable || verdict.rejoin) throw err;
      if (position() > lastPos) {
        lastPos = position();
        lastProgress = Date.now();
        failures = 0;
      }
      if (Date.now() - lastProgress > policy.idleMs) {
        throw new SiteAgentError('TRANSFER_STALLED', `${what}: no progress for ${policy.idleMs / 1000} s (${(err as Error).message})`, true, {}, { cause: err });
      }
      await sleep(backoffDelay(policy.retry, failures++, Math.random), signal);
    }
  }
}

/** What an upload declares before its bytes. */
export interface UploadHeaderFields {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly baseModelSha256: string;
  readonly encoding: string;
  readonly tensors: readonly { name: string; dtype: string; shape: readonly number[] }[];
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
  readonly trainLoss: number;
  readonly dataManifestSha256: string;
  /** The busy span of the fresh work, Unix ms (absent or 0: not known); display only. */
  readonly trainStartedMs?: number;
  readonly trainFinishedMs?: number;
  /**
   * A persistent trainer's snapshot (overlapped runs): steps between its previous snapshot and the
   * one that applied the base, and milliseconds of steps in the busy span (absent or 0: not known).
   */
  readonly appliedStalenessSteps?: number;
  readonly busyMs?: number;
  /** Earlier work folded into the delta, by base (docs/protocol.md, "Bases, staleness and folded work"). */
  readonly folded?: readonly FoldedPartFields[];
  /** Names the delta's bytes for reuse in a later attempt of the round (absent or '': unnamed). */
  readonly contentId?: string;
}

/** One folded part as the header names it: its base and its counts. */
export interface FoldedPartFields {
  readonly baseModelSha256: string;
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
}

/** How an upload runs. */
export interface UploadOptions {
  readonly chunkBytes: number;
  /** Streams to split the delta over (already capped by the coordinator's allowance). */
  readonly streams: number;
  /** Site-wide upload rate limit in bytes per second, shared by all streams (0: none). */
  readonly rateBytesPerS: number;
  readonly policy: TransferPolicy;
  /** Bytes put on the wire, re-sent ones included (tests count them). */
  readonly onSent?: (n: number) => void;
  /** A stream waits for the coordinator's shared in-flight budget (told again while it waits). */
  readonly onQueued?: (q: UploadQueue) => void;
  /**
   * A client for an aggregator shard's endpoint (its certificate must carry the `aggregator` role):
   * the coordinator is then asked where the delta goes (AdmitUpload), and the parts it names go
   * to their shards. Absent: the whole delta goes to `client`.
   */
  readonly shardClient?: (endpoint: string) => SiteServiceClient;
}

/** One part of a delta and the client that takes it: the coordinator for a whole delta, or an aggregator shard. */
interface PartTarget {
  readonly client: SiteServiceClient;
  readonly start: number;
  readonly end: number;
  /** The header's part fields: 0/0 for the whole delta. */
  readonly partStart: number;
  readonly partEnd: number;
  readonly shard: string | undefined;
}

/** Splits [from, to) (default the whole delta) into `n` contiguous stripes whose bounds fall between values (int8: blocks). */
export function planStripes(encoder: DeltaEncoder, n: number, from = 0, to = encoder.totalBytes): { start: number; end: number }[] {
  const size = to - from;
  const cuts = [from];
  for (let k = 1; k < n; k++) {
    let at = Math.max(cuts[cuts.length - 1]!, from + Math.floor((size * k) / n));
    while (at < to && !isUnitBoundary(encoder.segments, at)) at++;
    if (at > cuts[cuts.length - 1]! && at < to) cuts.push(at);
  }
  cuts.push(to);
  return cuts.slice(1).map((end, i) => ({ start: cuts[i]!, end }));
}

/**
 * Where the delta goes: the parts the coordinator names for its aggregator shards (each over a
 * client of the shard, which the caller closes), or the whole delta to the coordinator.
 */
async function uploadTargets(client: SiteServiceClient, header: NonNullable<UploadMessage['header']>, o: UploadOptions, total: number, signal: AbortSignal): Promise<PartTarget[]> {
  const whole: PartTarget[] = [{ client, start: 0, end: total, partStart: 0, partEnd: 0, shard: undefined }];
  if (!o.shardClient) return whole;
  const admission = await withRetries('admission of the upload', o.policy, signal, () => 0, () =>
    new Promise<UploadAdmission__Output | undefined>((resolve, reject) => {
      const cancel = (): void => call.cancel();
      const call = client.AdmitUpload(header, { deadline: Date.now() + o.policy.idleMs }, (err, res) => {
        signal.removeEventListener('abort', cancel);
        // A server without AdmitUpload (one that predates part uploads) takes whole deltas.
        if (err?.code === grpc.status.UNIMPLEMENTED) resolve(undefined);
        else if (err || !res) reject(err ?? new Error('AdmitUpload answered nothing'));
        else resolve(res);
      });
      signal.addEventListener('abort', cancel, { once: true });
    }),
  );
  if (admission === undefined || admission.parts.length === 0) return whole;
  const parts = admission.parts.map((p) => ({ shard: p.shard, endpoint: p.endpoint, start: Number(p.start), end: Number(p.end) }));
  // The parts must tile the delta: anything else is a coordinator this agent cannot follow.
  if (parts.some((p, i) => !(p.start < p.end) || p.start !== (i === 0 ? 0 : parts[i - 1]!.end)) || parts.at(-1)!.end !== total) {
    throw new SiteAgentError('UPLOAD_INCOMPLETE', `the coordinator's parts ${parts.map((p) => `[${p.start}, ${p.end})`).join(' ')} do not tile the delta's ${total} bytes`, false);
  }
  return parts.map((p) => ({ client: o.shardClient!(p.endpoint), start: p.start, end: p.end, partStart: p.start, partEnd: p.end, shard: p.shard }));
}

/** A pacer shared by every stream of one site: never ahead of rate × elapsed. */
export function ratePacer(rateBytesPerS: number, signal: AbortSignal): (n: number) => Promise<void> {
  if (!(rateBytesPerS > 0)) return async () => undefined;
  let next = Date.now();
  return async (n) => {
    // Each chunk takes the next free slot of n / rate seconds; streams queue on the same clock.
    const now = Date.now();
    const at = Math.max(next, now);
    next = at + (n / rateBytesPerS) * 1000;
    if (at > now) await sleep(at - now, signal);
  };
}

/**
 * Uploads the delta `encoder` produces: one stream per stripe, each retried and resumed until the
 * coordinator — or, where it names parts, each aggregator shard — has it all. Resolves with the
 * result of the stream that completed the delta; of parts, with their bytes together and each
 * part's SHA-256 as its shard verified it (`sha256` is then `partsSha256` of them, as the journal
 * records the delta).
 */
export async function uploadDelta(client: SiteServiceClient, header: UploadHeaderFields, encoder: DeltaEncoder, outer: AbortSignal, onProgress: TransferProgress, o: UploadOptions): Promise<UploadOutcome> {
  // One stripe failing for good stops the others.
  const stop = new AbortController();
  const signal = AbortSignal.any([outer, stop.signal]);
  const baseHeader: NonNullable<UploadMessage['header']> = {
    ...header,
    tensors: header.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] })),
    folded: (header.folded ?? []).map((f) => ({ ...f })),
    encoding: { name: header.encoding },
    totalBytes: encoder.totalBytes,
  };
  const targets = await uploadTargets(client, baseHeader, o, encoder.totalBytes, signal);
  try {
    return await uploadParts(targets, baseHeader, encoder, signal, stop, onProgress, o);
  } finally {
    for (const t of targets) if (t.client !== client) t.client.close();
  }
}

/** Uploads each target's part over its share of the streams; resolves when every part is complete. */
async function uploadParts(
  targets: readonly PartTarget[],
  baseHeader: NonNullable<UploadMessage['header']>,
  encoder: DeltaEncoder,
  signal: AbortSignal,
  stop: AbortController,
  onProgress: TransferProgress,
  o: UploadOptions,
): Promise<UploadOutcome> {
  const { policy } = o;
  // The streams are shared among the parts by their sizes, at least one each.
  const perPart = (t: PartTarget): number => Math.max(1, Math.round((Math.max(1, o.streams) * (t.end - t.start)) / encoder.totalBytes));
  const stripes = targets.flatMap((t) => {
    const own = planStripes(encoder, perPart(t), t.start, t.end);
    return own.map((s) => ({ ...s, target: t, count: own.length }));
  });
  const positions = stripes.map((s) => s.start);
  const done = (): number => positions.reduce((sum, p, i) => sum + p - stripes[i]!.start, 0);
  const pace = ratePacer(o.rateBytesPerS, signal);
  // Chunk buffers are used again only where the stream calls back after writing (client.ts).
  const recycleChunks = targets.every((t) => callsBackAfterWrite(t.client));
  // A part sent on one stream is proved by one SHA-256, kept across that stream's retries.
  const wholes = stripes.map((s) => (s.count === 1 ? new WholeStripeDigest(s.start) : undefined));
  const results = await Promise.all(
    stripes.map((s, i) =>
      withRetries(`upload of stripe ${s.start}..${s.end}${s.target.shard ? ` to shard ${s.target.shard}` : ''}`, policy, signal, () => positions[i]!, async () => {
        const call = s.target.client.Upload({ deadline: Infinity });
        const abort = (): void => call.cancel();
        signal.addEventListener('abort', abort, { once: true });
        try {
          const wireHeader: UploadMessage['header'] = {
            ...baseHeader,
            stripeOffset: s.start,
            stripeBytes: s.end - s.start,
            stripeCount: s.count,
            chunkBytes: o.chunkBytes,
            partStart: s.target.partStart,
            partEnd: s.target.partEnd,
          };
          const onPosition = (p: number): void => {
            positions[i] = Math.max(positions[i]!, p);
            onProgress(done(), encoder.totalBytes);
          };
          // A stream idle for a third of the stall limit is replaced by a fresh one (which resumes):
          // one opened on a connection that died under it may never hear so. Only idleMs without
          // progress across streams fails the transfer.
          const streamIdleMs = Math.max(1_000, Math.floor(policy.idleMs / 3));
          const result = await sendStripe(call, {
            encoder,
            header: wireHeader,
            start: s.start,
            end: s.end,
            chunkBytes: o.chunkBytes,
            idleMs: streamIdleMs,
            signal,
            pace,
            onSent: o.onSent ?? (() => undefined),
            onPosition,
            onQueued: o.onQueued,
            recycleChunks,
            whole: wholes[i],
          });
          call.end();
          return result;
        } catch (err) {
          call.cancel();
          throw err;
        } finally {
          signal.removeEventListener('abort', abort);
        }
      }).catch((err: unknown) => {
        stop.abort(err);
        throw err;
      }),
    ),
  );
  // Each part completes on one of its stripes; a whole delta is one part.
  const complete = results.filter((r) => r.complete);
  if (complete.length !== targets.length) throw new SiteAgentError('UPLOAD_INCOMPLETE', `every stripe was received but ${complete.length} of ${targets.length} parts completed`, true);
  // A whole delta: the coordinator's result. Parts (one shard's, too): the journal names them.
  if (targets.length === 1 && targets[0]!.shard === undefined) return complete[0]!;
  const bytes = complete.reduce((n, r) => n + r.receivedBytes, 0);
  // Each part's hash is the one its shard verified it under, from the stripe that completed it.
  const parts = targets.map((t) => ({ start: t.start, end: t.end, sha256: results.find((r, i) => r.complete && stripes[i]!.target === t)!.sha256 }));
  return { accepted: true, receivedBytes: bytes, message: `verified by ${targets.length} aggregator shards`, complete: true, sha256: partsSha256(parts), parts };
}
