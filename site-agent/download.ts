/**
 * Downloads of the global model. They land in a content-addressed cache (skipped when the model is
 * already held), check each chunk's CRC32C, resume from what a partial file holds after a break or
 * a bad chunk, and verify the whole file's SHA-256. Where the coordinator has aggregator shards it
 * names one byte range of the file per shard (`AdmitDownload`, protocol version 12), and each range
 * comes from the shard that wrote it, all at once; the partial file then has a sidecar
 * (`<partial>.parts`) recording how far each range got, so a restarted agent resumes every range.
 */
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import type { Hash } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { feedHashFromFile, fsyncDir, hashFilePrefix, pathExists } from '../common/files.js';
import type { DownloadAdmission__Output, SiteServiceClient } from '../proto/index.js';
import { SiteAgentError } from './errors.js';
import { type TransferPolicy, type TransferProgress, withRetries } from './transfer.js';
import { modelChunksFromWire } from './wire.js';

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
const SHARD_TRIES = 3;

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
  const first = ranges[0]!;
  const state = { received: 0, hash: await hashFilePrefix(partial, first.at, o.signal) };
  const done = (): number => ranges.reduce((n, r) => n + r.at - r.start, 0);
  const record = parts === undefined ? undefined : sidecar(partial, sha256, ranges);
  const clients = parts?.map((p) => o.shardClient!(p.endpoint)) ?? [client];
  // Created once here: every range's calls open it to write at their own offsets.
  await (await open(partial, 'a', 0o600)).close();
  let unsaved = 0;
  /** Per range, the calls in a row that moved no byte. */
  const stalls = ranges.map(() => 0);
  try {
    await Promise.all(
      ranges.map((r, i) =>
        withRetries(`download of ${sha256}${parts ? ` [${r.start}, ${r.end}) from shard ${parts[i]!.shard}` : ''}`, o.policy, o.signal, () => r.at, async () => {
          const into = { sha256, partial, range: r, hash: i === 0 ? state.hash : undefined, cutAfter: record === undefined };
          // A shard that keeps failing (gone, restarted and not yet admitted again) is passed over:
          // the coordinator serves every byte of a model it committed.
          const from = (stalls[i] ?? 0) < SHARD_TRIES ? clients[i]! : client;
          const before = r.at;
          try {
            await downloadRange(from, into, o, (n) => {
              state.received += n;
              o.onProgress(done(), sizeBytes);
              // Progress is recorded as it goes too, so that an agent killed outright resumes near where it was.
              unsaved += n;
              if (record !== undefined && unsaved >= SIDECAR_EVERY_BYTES) {
                unsaved = 0;
                void record.save().catch(() => undefined);
              }
            });
          } finally {
            stalls[i] = r.at > before ? 0 : (stalls[i] ?? 0) + 1;
            await record?.save();
          }
        }),
      ),
    );
  } finally {
    for (const c of clients) if (c !== client) c.close();
  }
  o.signal.throwIfAborted();
  await feedHashFromFile(state.hash, partial, first.end, sizeBytes, o.signal);
  const actual = state.hash.digest('hex');
  if (actual !== sha256) {
    await rm(partial, { force: true });
    await rm(`${partial}.parts`, { force: true });
    throw new SiteAgentError('MODEL_CHECKSUM', `downloaded model hashes to ${actual}, expected ${sha256}`, true);
  }
  await rename(partial, path);
  await rm(`${partial}.parts`, { force: true });
  await fsyncDir(o.cacheDir);
  return { path, bytes: state.received };
}

/**
 * The parts the coordinator names for `sha256`, each from its aggregator shard; undefined: the
 * whole file from the coordinator (no shards, a shard away, or a coordinator without AdmitDownload).
 */
async function admittedParts(client: SiteServiceClient, sha256: string, sizeBytes: number, o: DownloadOptions): Promise<{ shard: string; endpoint: string; start: number; end: number }[] | undefined> {
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
    throw new SiteAgentError('MODEL_CHECKSUM', `the coordinator's parts ${parts.map((p) => `[${p.start}, ${p.end})`).join(' ')} do not tile the model's ${sizeBytes} bytes`, false);
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
  const kept = prefix > sizeBytes ? 0 : Math.min(prefix, wanted[0]!.end);
  if (size > 0) await truncate(partial, kept);
  await rm(`${partial}.parts`, { force: true });
  return wanted.map((r, i) => ({ ...r, at: i === 0 ? r.start + kept : r.start }));
}

async function readSidecar(partial: string): Promise<PartsRecord | undefined> {
  try {
    const v = JSON.parse(await readFile(`${partial}.parts`, 'utf8')) as PartsRecord;
    const ok = typeof v.sha256 === 'string' && Array.isArray(v.ranges) && v.ranges.every((r) => [r.start, r.end, r.at].every((x) => Number.isSafeInteger(x)));
    return ok ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The sidecar of a parts download: saved after every call of a range, one write at a time. */
function sidecar(partial: string, sha256: string, ranges: readonly Range[]): { save(): Promise<void> } {
  let queue = Promise.resolve();
  return {
    save() {
      queue = queue.then(() => writeFile(`${partial}.parts`, JSON.stringify({ sha256, ranges }), { mode: 0o600 }));
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
}

/**
 * One `Download` call of bytes [at, end) of the target's range into the partial file; a chunk
 * failing its CRC32C ends it (the retry resumes there).
 */
async function downloadRange(client: SiteServiceClient, t: RangeTarget, o: DownloadOptions, onBytes: (n: number) => void): Promise<void> {
  const r = t.range;
  if (r.at === r.end) return;
  const file = await open(t.partial, 'r+');
  const call = client.Download({ sha256: t.sha256, offset: r.at, end: r.end }, { deadline: Infinity });
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => call.cancel(), o.policy.idleMs);
  };
  const abort = (): void => call.cancel();
  o.signal.addEventListener('abort', abort, { once: true });
  try {
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
    o.signal.removeEventListener('abort', abort);
    call.cancel();
    if (t.cutAfter) await file.truncate(r.at).catch(() => undefined);
    await file.close();
  }
}
