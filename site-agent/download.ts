/**
 * Downloads of the global model. They land in a content-addressed cache (skipped when the model is
 * already held), check each chunk's CRC32C, resume from what a partial file holds after a break or
 * a bad chunk, and verify the whole file's SHA-256. Where the coordinator has aggregator shards it
 * names one byte range of the file per shard (`AdmitDownload`, protocol version 12), and each range
 * comes from the shard that wrote it, all at once; the partial file then has a sidecar
 * (`<partial>.parts`) recording how far each range got, so a restarted agent resumes every range.
 */
import * as grpc from '@grpc/grpc-js';
import type { Hash } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { feedHashFromFile, fsyncDir, hashFilePrefix, pathExists } from '../common/files.js';
import type { DownloadAdmission__Output, SiteServiceClient } from '../proto/index.js';
import { invariant } from '../aggregation/index.js';
import { SiteAgentError } from './errors.js';
import { classifyFailure } from './retry.js';
import { type TransferPolicy, type TransferProgress, withRetries } from './transfer.js';
import { crc32c, modelChunksFromWire } from './wire.js';

/** Local path of a cached model. */
export function cachedModelPath(cacheDir: string, sha256: string): string {
  return join(cacheDir, `${sha256}.safetensors`);
}

/**
 * Removes the cached global models not in `keep` (each round downloads one: a long run would fill
 * the disk with them); partial downloads and other files stay. Returns the models removed.
 */
export async function pruneModelCache(cacheDir: string, keep: ReadonlySet<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(cacheDir).catch(() => [])) {
    const sha = /^([0-9a-f]{64})\.safetensors$/.exec(name)?.[1];
    if (sha === undefined || keep.has(sha)) continue;
    await rm(join(cacheDir, name), { force: true });
    removed.push(sha);
  }
  return removed;
}

/** The model to fetch: its content address and size. */
export interface ModelToFetch {
  readonly sha256: string;
  readonly sizeBytes: number;
}

export interface DownloadOptions {
  readonly cacheDir: string;
  readonly signal: AbortSignal;
  readonly onProgress: TransferProgress;
  readonly policy: TransferPolicy;
  /**
   * A client for an aggregator shard's endpoint (its certificate must carry the `aggregator` role):
   * the coordinator is then asked where the model's parts come from (`AdmitDownload`). Absent: the
   * whole file comes from the coordinator.
   */
  readonly shardClient?: (endpoint: string) => SiteServiceClient;
}

/** Calls in a row that move no byte from a range's shard before the coordinator is asked for the rest of the range. */
const SHARD_TRIES = 2;

/** A parts download records its ranges' progress at least this often. */
const SIDECAR_EVERY_BYTES = 64 << 20;

/** One byte range of the model file and how far it got: [start, at) is in the partial file. */
interface Range {
  readonly start: number;
  readonly end: number;
  at: number;
}

/** What `<partial>.parts` holds. */
interface PartsRecord {
  readonly sha256: string;
  readonly ranges: readonly Range[];
}

/**
 * Ensures `model` is in the cache, downloading what is missing. Returns its path and the bytes
 * actually transferred (0 when it was already held).
 */
export async function downloadModel(client: SiteServiceClient, model: ModelToFetch, o: DownloadOptions): Promise<{ path: string; bytes: number }> {
  const { sha256, sizeBytes } = model;
  await mkdir(o.cacheDir, { recursive: true });
  const path = cachedModelPath(o.cacheDir, sha256);
  if (await pathExists(path)) return { path, bytes: 0 };
  const partial = `${path}.partial`;
  const parts = await admittedParts(client, sha256, sizeBytes, o);
  const ranges = await resumeRanges(partial, sha256, sizeBytes, parts?.map((p) => ({ start: p.start, end: p.end })) ?? [{ start: 0, end: sizeBytes }]);
  // The digest is fed as the first range's chunks are written, in order; the other ranges are read
  // back once every range is in (a partial file's finished prefix is read back first).
  const first = ranges[0];
  invariant(first !== undefined, 'a download has a first range');
  const hash = await hashFilePrefix(partial, first.at, o.signal);
  const received = await fetchRanges({ client, sha256, sizeBytes, partial, ranges, parts, hash }, o);
  o.signal.throwIfAborted();
  await feedHashFromFile(hash, partial, first.end, sizeBytes, o.signal);
  const actual = hash.digest('hex');
  if (actual !== sha256) {
    await rm(partial, { force: true });
    await rm(sidecarPath(partial), { force: true });
    throw new SiteAgentError('MODEL_CHECKSUM', `downloaded model hashes to ${actual}, expected ${sha256}`, true);
  }
  await rename(partial, path);
  await rm(sidecarPath(partial), { force: true });
  await fsyncDir(o.cacheDir);
  return { path, bytes: received };
}

/** One download's ranges and where they go. */
interface RangesDownload {
  readonly client: SiteServiceClient;
  readonly sha256: string;
  readonly sizeBytes: number;
  readonly partial: string;
  readonly ranges: readonly Range[];
  /** The shards' parts, one per range; undefined: one range, from the coordinator. */
  readonly parts: readonly AdmittedPart[] | undefined;
  /** Fed the first range's bytes as they arrive. */
  readonly hash: Hash;
}

/**
 * Downloads every range at once, each retried and resumed from its last good byte; the first to
 * fail for good stops the others, and every range has settled before it throws. A range whose
 * shard fails {@link SHARD_TRIES} calls in a row without a byte, or refuses it for good, is asked
 * of the coordinator from then on: it serves every byte of a model it committed. Resolves with the
 * bytes received.
 */
async function fetchRanges(d: RangesDownload, o: DownloadOptions): Promise<number> {
  const stop = new AbortController();
  const signal = AbortSignal.any([o.signal, stop.signal]);
  const record = d.parts === undefined ? undefined : sidecar(d.partial, d.sha256, d.ranges);
  // Created once here: every range's calls open it to write at their own offsets.
  await (await open(d.partial, 'a', 0o600)).close();
  // Before the first byte: a partial file with holes is never read as a prefix.
  await record?.save();
  const clients = d.parts?.map((p) => shardClientOf(o)(p.endpoint)) ?? [];
  const fellBack = d.ranges.map(() => false);
  const stalls = d.ranges.map(() => 0);
  let received = 0;
  let unsaved = 0;
  const onBytes = (n: number): void => {
    received += n;
    o.onProgress(d.ranges.reduce((sum, r) => sum + r.at - r.start, 0), d.sizeBytes);
    // Progress is recorded as it goes too, so that an agent killed outright resumes near where it was.
    unsaved += n;
    if (record !== undefined && unsaved >= SIDECAR_EVERY_BYTES) {
      unsaved = 0;
      void record.save().catch(() => undefined);
    }
  };
  const fetchOne = (r: Range, i: number): Promise<void> =>
    withRetries(`download of ${d.sha256}${d.parts ? ` [${r.start}, ${r.end}) from shard ${d.parts[i]!.shard}` : ''}`, o.policy, signal, () => r.at, async () => {
      const shard = d.parts !== undefined && !fellBack[i] ? clients[i] : undefined;
      // A call to a shard that goes quiet is given up sooner, so the coordinator is asked in time.
      const idleMs = shard ? Math.max(1_000, Math.floor(o.policy.idleMs / 3)) : o.policy.idleMs;
      const into = { sha256: d.sha256, partial: d.partial, range: r, hash: i === 0 ? d.hash : undefined, cutAfter: record === undefined, idleMs };
      const before = r.at;
      try {
        await downloadRange(shard ?? d.client, into, signal, onBytes);
      } catch (err) {
        if (!shard) throw err;
        stalls[i] = r.at > before ? 0 : stalls[i]! + 1;
        if (stalls[i]! < SHARD_TRIES && classifyFailure(err).retryable) throw err;
        fellBack[i] = true;
        throw new SiteAgentError('UNREACHABLE', `shard ${d.parts![i]!.shard} did not serve [${r.at}, ${r.end}) (${(err as Error).message}): asking the coordinator for it`, true, {}, { cause: err });
      } finally {
        await record?.save();
      }
    });
  const settled = await Promise.allSettled(
    d.ranges.map((r, i) =>
      fetchOne(r, i).catch((err: unknown) => {
        stop.abort(err);
        throw err;
      }),
    ),
  );
  for (const c of clients) c.close();
  const failed = settled.find((x) => x.status === 'rejected');
  if (failed) throw failed.reason;
  return received;
}

/** The caller's shard clients; a download admitted in parts has them (admittedParts asks only then). */
function shardClientOf(o: DownloadOptions): (endpoint: string) => SiteServiceClient {
  invariant(o.shardClient !== undefined, 'parts are admitted only to an agent with shard clients');
  return o.shardClient;
}

/** A part the coordinator admitted: its shard, where the shard listens, and its byte range of the file. */
interface AdmittedPart {
  readonly shard: string;
  readonly endpoint: string;
  readonly start: number;
  readonly end: number;
}

/**
 * The parts the coordinator names for `sha256`, each from its aggregator shard; undefined: the
 * whole file from the coordinator (no shards, a shard away, or a coordinator without AdmitDownload).
 */
async function admittedParts(client: SiteServiceClient, sha256: string, sizeBytes: number, o: DownloadOptions): Promise<AdmittedPart[] | undefined> {
  if (!o.shardClient) return undefined;
  const admission = await withRetries('admission of the download', o.policy, o.signal, () => 0, () =>
    new Promise<DownloadAdmission__Output | undefined>((resolve, reject) => {
      const cancel = (): void => call.cancel();
      const call = client.AdmitDownload({ sha256, offset: 0, end: 0 }, { deadline: Date.now() + o.policy.idleMs }, (err, res) => {
        o.signal.removeEventListener('abort', cancel);
        if (err?.code === grpc.status.UNIMPLEMENTED) resolve(undefined);
        else if (err || !res) reject(err ?? new Error('AdmitDownload answered nothing'));
        else resolve(res);
      });
      o.signal.addEventListener('abort', cancel, { once: true });
    }),
  );
  if (admission === undefined || admission.parts.length === 0) return undefined;
  const parts = admission.parts.map((p) => ({ shard: p.shard, endpoint: p.endpoint, start: Number(p.start), end: Number(p.end) }));
  // The parts must tile the file: anything else is a coordinator this agent cannot follow.
  if (parts.some((p, i) => !(p.start < p.end) || p.start !== (i === 0 ? 0 : parts[i - 1]!.end)) || parts.at(-1)!.end !== sizeBytes) {
    throw new SiteAgentError('WIRE_INVALID', `the coordinator's parts ${parts.map((p) => `[${p.start}, ${p.end})`).join(' ')} do not tile the model's ${sizeBytes} bytes`, false);
  }
  return parts;
}

/**
 * Where each range resumes from what the partial file holds. A sidecar of the same model and
 * ranges gives every range's progress; otherwise only the partial file's contiguous prefix counts
 * (a whole download's partial file, or the first range of a parts download whose sidecar names
 * other ranges), and the file is cut to it.
 */
async function resumeRanges(partial: string, sha256: string, sizeBytes: number, wanted: readonly { start: number; end: number }[]): Promise<Range[]> {
  const size = (await pathExists(partial)) ? (await stat(partial)).size : 0;
  const saved = await readSidecar(partial);
  const same = saved !== undefined && saved.sha256 === sha256 && saved.ranges.length === wanted.length && saved.ranges.every((r, i) => r.start === wanted[i]!.start && r.end === wanted[i]!.end);
  if (same && saved.ranges.every((r) => r.at >= r.start && r.at <= r.end && r.at <= size)) return saved.ranges.map((r) => ({ ...r }));
  const prefix = saved === undefined ? size : saved.sha256 === sha256 ? (saved.ranges[0]?.at ?? 0) : 0;
  const kept = prefix > sizeBytes ? 0 : Math.min(prefix, size, wanted[0]!.end);
  if (size > 0) await truncate(partial, kept);
  await rm(sidecarPath(partial), { force: true });
  return wanted.map((r, i) => ({ ...r, at: i === 0 ? r.start + kept : r.start }));
}

/** Where a parts download keeps its ranges' progress: beside the partial file. */
function sidecarPath(partial: string): string {
  return `${partial}.parts`;
}

const offset = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const sidecarSchema = z.object({ sha256: z.string(), ranges: z.array(z.object({ start: offset, end: offset, at: offset }).strict()) }).strict();

/** The sidecar beside `partial`, or undefined when there is none or it is not one. */
async function readSidecar(partial: string): Promise<PartsRecord | undefined> {
  try {
    const parsed = sidecarSchema.safeParse(JSON.parse(await readFile(sidecarPath(partial), 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The sidecar of a parts download: saved before the first byte, after every call of a range and as
 * bytes come, one write at a time, each whole (a temp file renamed over it). A failed write is
 * logged by nobody and tried again at the next save.
 */
function sidecar(partial: string, sha256: string, ranges: readonly Range[]): { save(): Promise<void> } {
  let queue = Promise.resolve();
  const write = async (): Promise<void> => {
    const tmp = `${sidecarPath(partial)}.tmp`;
    await writeFile(tmp, JSON.stringify({ sha256, ranges }), { mode: 0o600 });
    await rename(tmp, sidecarPath(partial));
  };
  return {
    save() {
      queue = queue.catch(() => undefined).then(write);
      return queue;
    },
  };
}

/** Where one range's bytes go: the partial file, the range's progress, and the digest fed in order (the first range's). */
interface RangeTarget {
  readonly sha256: string;
  readonly partial: string;
  readonly range: Range;
  readonly hash: Hash | undefined;
  /** The partial file holds this range only: cut it to the verified bytes when the call ends. */
  readonly cutAfter: boolean;
  /** A call that receives nothing for this long is cut (the retry resumes). */
  readonly idleMs: number;
}

/**
 * One `Download` call of bytes [at, end) of the target's range into the partial file; a chunk
 * failing its CRC32C ends it (the retry resumes there).
 */
async function downloadRange(client: SiteServiceClient, t: RangeTarget, signal: AbortSignal, onBytes: (n: number) => void): Promise<void> {
  const r = t.range;
  if (r.at === r.end) return;
  const file = await open(t.partial, 'r+');
  let call: ReturnType<SiteServiceClient['Download']> | undefined;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => call?.cancel(), t.idleMs);
  };
  const abort = (): void => call?.cancel();
  signal.addEventListener('abort', abort, { once: true });
  try {
    signal.throwIfAborted();
    call = client.Download({ sha256: t.sha256, offset: r.at, end: r.end }, { deadline: Infinity });
    arm();
    for await (const chunk of modelChunksFromWire(call)) {
      arm();
      const at = chunk.offset;
      if (at !== r.at) throw new SiteAgentError('MODEL_CHECKSUM', `download chunk at ${at}, expected ${r.at}`, true);
      if (at + chunk.data.length > r.end) throw new SiteAgentError('MODEL_CHECKSUM', `download chunk at ${at} runs past ${r.end}`, true);
      if (crc32c(chunk.data) !== chunk.crc32c) throw new SiteAgentError('CHUNK_CRC', `download chunk at ${at} failed its CRC32C: asking again from there`, true);
      await file.write(chunk.data, 0, chunk.data.length, at);
      t.hash?.update(chunk.data);
      r.at += chunk.data.length;
      onBytes(chunk.data.length);
    }
    if (r.at !== r.end) throw new SiteAgentError('MODEL_CHECKSUM', `download ended at ${r.at} of [${r.start}, ${r.end})`, true);
    await file.sync();
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', abort);
    call?.cancel();
    if (t.cutAfter) await file.truncate(r.at).catch(() => undefined);
    await file.close();
  }
}
