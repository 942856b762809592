/**
 * A raw `SiteService` client for tests that misbehave on purpose: built from arbitrary certificate
 * files (another CA's, another site's, an admin's), it joins with any fields, opens the task stream,
 * and sends hand-crafted upload streams message by message. Nothing here retries or repairs input:
 * what the test builds is what the coordinator receives.
 */
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  loadProto,
  type JoinRequest,
  type JoinResponse__Output,
  type SiteServiceClient,
  type Task__Output,
  type TrainTask__Output,
  type UploadHeader,
  type UploadMessage,
  type UploadReply__Output,
  type UploadResult__Output,
} from '../../proto/index.js';
import { deltaSegments, stripePieces, type DeltaEncoding } from '../../aggregation/index.js';
import type { TestFederation } from './federation.js';

/** PEM files of a TLS identity: the CA to trust the coordinator with, and the client's own pair. */
export interface CertFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** The provisioned certificate files of site `site` in `fed`. */
export function siteCertFiles(fed: TestFederation, site: string): CertFiles {
  const dir = fed.member('sites', site);
  return { ca: join(dir, 'ca.crt'), cert: join(dir, 'site.crt'), key: join(dir, 'site.key') };
}

/** The provisioned certificate files of admin `admin` in `fed`. */
export function adminCertFiles(fed: TestFederation, admin = 'admin'): CertFiles {
  const dir = fed.member('admins', admin);
  return { ca: join(dir, 'ca.crt'), cert: join(dir, 'admin.crt'), key: join(dir, 'admin.key') };
}

/** The outcome of one call: its value, or the gRPC error the coordinator answered with. */
export type CallOutcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: grpc.ServiceError };

/** A refused call in the terms tests assert on. */
export interface Refusal {
  /** gRPC status code. */
  readonly code: grpc.status;
  /** The `fedhpc-error-code` metadata value, or undefined when the coordinator sent none. */
  readonly fedhpcCode: string | undefined;
  readonly details: string;
}

/** The refusal of a call that must have failed; throws (failing the test) when it succeeded. */
export function refusal<T>(outcome: CallOutcome<T>): Refusal {
  if (outcome.ok) throw new Error(`expected the call to be refused, it succeeded with ${JSON.stringify(outcome.value)}`);
  const codes = outcome.error.metadata?.get('fedhpc-error-code') ?? [];
  return { code: outcome.error.code, fedhpcCode: codes.length > 0 ? String(codes[0]) : undefined, details: outcome.error.details };
}

/** Options of {@link RawSiteClient}. */
export interface RawSiteClientOptions {
  /** `host:port` of the coordinator. */
  readonly address: string;
  readonly files: CertFiles;
  /** Per-call deadline for unary calls and uploads; default 15 s. */
  readonly timeoutMs?: number;
}

/** A `SiteService` client that sends exactly what it is given. */
export class RawSiteClient {
  /** The generated client, for RPCs this class does not wrap (the secure stages). */
  readonly client: SiteServiceClient;
  private readonly timeoutMs: number;
  private readonly streams = new Set<TaskStream>();

  constructor(o: RawSiteClientOptions) {
    const credentials = grpc.credentials.createSsl(readFileSync(o.files.ca), readFileSync(o.files.key), readFileSync(o.files.cert));
    const { SiteService } = loadProto().fedhpc.v1;
    this.client = new SiteService(o.address, credentials, {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      // Fail fast: a refused handshake must surface as an error, not as reconnect attempts.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 1_000,
    });
    this.timeoutMs = o.timeoutMs ?? 15_000;
  }

  /** Calls `Join`; unset fields default to this build's protocol version and an empty site id. */
  join(request: JoinRequest = {}): Promise<CallOutcome<JoinResponse__Output>> {
    const req: JoinRequest = { protocolVersion: PROTOCOL_VERSION, agentVersion: 'raw-test-client', cachedModels: [], ...request };
    return new Promise((resolve) => {
      this.client.Join(req, { deadline: Date.now() + this.timeoutMs }, (err, res) =>
        resolve(err ? { ok: false, error: err } : res ? { ok: true, value: res } : { ok: false, error: emptyResponse() }),
      );
    });
  }

  /** Opens the `Tasks` stream; tasks are collected until the stream ends or `close()`. */
  openTasks(): TaskStream {
    const stream = new TaskStream(this.client.Tasks({}, { deadline: Infinity }));
    this.streams.add(stream);
    return stream;
  }

  /**
   * Sends `messages` on one `Upload` stream, one at a time (waiting for 'drain' when the HTTP/2
   * window is full), then half-closes. Stops writing as soon as the coordinator has answered, so a
   * stream it refused early is not fed further.
   */
  async upload(messages: readonly UploadMessage[]): Promise<CallOutcome<UploadResult__Output>> {
    return (await this.uploadStream(messages)).outcome;
  }

  /**
   * Like `upload`, with every reply of the coordinator (accepted offset, acks, resend requests).
   * Chunks without a `crc32c` get the right one, and a stream with no digest message gets the
   * right tensor digests after the chunks that complete them; anything set explicitly is sent as
   * it is. `cancelAfter` cancels the call after that many messages (a broken connection).
   */
  async uploadStream(messages: readonly UploadMessage[], o: { cancelAfter?: number } = {}): Promise<UploadStreamOutcome> {
    return runUploadStream(this.client, completeUpload(messages), this.timeoutMs, o.cancelAfter);
  }

  /** Opens one `Upload` stream driven message by message (stripes held open, breaks mid-way). */
  openUpload(): UploadStream {
    return new UploadStream(this.client.Upload({ deadline: Date.now() + this.timeoutMs }));
  }

  /** Ends every task stream opened here and closes the channel. */
  close(): void {
    for (const s of this.streams) s.close();
    this.streams.clear();
    this.client.close();
  }
}

function emptyResponse(): grpc.ServiceError {
  return Object.assign(new Error('empty response'), { code: grpc.status.INTERNAL, details: 'empty response', metadata: new grpc.Metadata() });
}


/** A raw client for `site` of `fed` that has joined and holds its task stream, as an agent would. */
export async function joinedRawSite(fed: TestFederation, site: string): Promise<{ client: RawSiteClient; tasks: TaskStream }> {
  const client = new RawSiteClient({ address: fed.address, files: siteCertFiles(fed, site) });
  const joined = await client.join({ siteId: site });
  if (!joined.ok) throw new Error(`raw ${site} could not join: ${joined.error.details}`);
  return { client, tasks: client.openTasks() };
}
/** An open `Tasks` stream: every task received, and waits for the next train task. */
export class TaskStream {
  readonly tasks: Task__Output[] = [];
  /** How the stream ended (its error, or 'end'), once it has. */
  ended: grpc.ServiceError | 'end' | undefined;
  private lastTrainRound = 0;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly call: grpc.ClientReadableStream<Task__Output>) {
    call.on('data', (task: Task__Output) => {
      this.tasks.push(task);
      this.wake();
    });
    call.on('error', (err: grpc.ServiceError) => {
      this.ended ??= err;
      this.wake();
    });
    call.on('end', () => {
      this.ended ??= 'end';
      this.wake();
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /**
   * Resolves with the first train task of a round later than any returned before (so consecutive
   * calls walk the run round by round). Rejects when the stream ends or `timeoutMs` passes.
   */
  nextTrain(timeoutMs = 30_000): Promise<TrainTask__Output> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const task = this.tasks.map((t) => t.train).find((t): t is TrainTask__Output => !!t && Number(t.round) > this.lastTrainRound);
        if (task) {
          this.lastTrainRound = Number(task.round);
          done();
          resolve(task);
        } else if (this.ended) {
          done();
          reject(new Error(`task stream ended before a train task for a round after ${this.lastTrainRound}: ${describeEnd(this.ended)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no train task for a round after ${this.lastTrainRound} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Cancels the stream (the coordinator sees the site leave). */
  close(): void {
    this.call.cancel();
  }
}

function describeEnd(e: grpc.ServiceError | 'end'): string {
  return e === 'end' ? 'the coordinator ended it' : `${grpc.status[e.code]}: ${e.details}`;
}

// ------------------------------------------------------------------ crafting deltas

/** Number of values in a tensor of `shape` (wire shapes are uint64 strings). */
export function elementsOf(shape: readonly (string | number)[]): number {
  return shape.reduce<number>((n, d) => n * Number(d), 1);
}

/** Bytes of the f32 delta a train task asks for: Σ elements × 4, in the task's tensor order. */
export function deltaBytes(task: TrainTask__Output): number {
  return task.tensors.reduce((n, t) => n + elementsOf(t.shape) * 4, 0);
}

/**
 * A well-formed f32 delta for `task` (little-endian, tensors in the task's order): small finite
 * values, so that aggregating it is harmless. `poke` may overwrite values (e.g. a NaN).
 */
export function craftDelta(task: TrainTask__Output, poke?: (values: Float32Array) => void): Buffer {
  const values = new Float32Array(deltaBytes(task) / 4);
  for (let i = 0; i < values.length; i++) values[i] = ((i % 7) - 3) * 1e-4;
  poke?.(values);
  const out = Buffer.alloc(values.length * 4);
  for (let i = 0; i < values.length; i++) out.writeFloatLE(values[i]!, i * 4);
  return out;
}

/** The header a correct agent would send for `task`; `overrides` replace fields. */
export function headerFor(task: TrainTask__Output, overrides: Partial<UploadHeader> = {}): UploadHeader {
  return {
    runId: task.runId,
    round: task.round,
    attempt: task.attempt,
    baseModelSha256: task.globalModel?.sha256 ?? '',
    encoding: { name: 'f32' },
    tensors: task.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] })),
    totalBytes: deltaBytes(task),
    // What a builtin site of the test federation declares: steps 20 × batchSize 32, one token each.
    samples: 640,
    tokens: 640,
    steps: 20,
    trainLoss: 2.5,
    dataManifestSha256: '',
    ...overrides,
  };
}

/** `data` as chunk messages (with CRC32C) of at most `maxChunkBytes` (a multiple of 4), starting at `offset`. */
export function chunkMessages(data: Buffer, maxChunkBytes: number, offset = 0): UploadMessage[] {
  const size = Math.max(4, maxChunkBytes - (maxChunkBytes % 4));
  const out: UploadMessage[] = [];
  for (let at = 0; at < data.length; at += size) {
    const part = data.subarray(at, at + size);
    out.push({ chunk: { offset: offset + at, data: part, crc32c: crc32c(part) } });
  }
  return out;
}

/** Hex SHA-256 of `data`. */
export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A complete, correct upload of `delta` for `task`: header, chunks, trailer. */
export function validUpload(task: TrainTask__Output, delta: Buffer, header: Partial<UploadHeader> = {}): UploadMessage[] {
  return [
    { header: headerFor(task, { totalBytes: delta.length, ...header }) },
    ...chunkMessages(delta, task.maxChunkBytes),
    { trailer: { sha256: sha256Hex(delta) } },
  ];
}

// ------------------------------------------------------------------ the Upload stream by hand

/** How one `Upload` stream ended, and what the coordinator said on it. */
export interface UploadStreamOutcome {
  readonly outcome: CallOutcome<UploadResult__Output>;
  readonly replies: UploadReply__Output[];
}

/**
 * Fills what a test leaves unset: each chunk's CRC32C, and — when the messages hold no digest and
 * the header does not offer to prove the stripe whole — the SHA-256 of every tensor piece after the
 * chunk that completes it (layout from the header).
 */
export function completeUpload(messages: readonly UploadMessage[]): UploadMessage[] {
  const header = messages.find((m) => m.header)?.header;
  const addDigests = header != null && header.wholeDigest !== true && !messages.some((m) => m.digest);
  const enc = (header?.encoding?.name ?? 'f32') as DeltaEncoding;
  const known = ['f32', 'bf16', 'int8', 'secagg32', 'secagg16'].includes(enc);
  const segments = header && known ? deltaSegments(enc, (header.tensors ?? []).map((t) => elementsOf((t.shape ?? []).map((d) => Number(d))))) : [];
  const total = segments.length > 0 ? segments[segments.length - 1]!.end : 0;
  const start = Number(header?.stripeOffset ?? 0);
  const bytes = Number(header?.stripeBytes ?? 0);
  const pieces = stripePieces(segments, start, bytes > 0 ? start + bytes : total);
  let piece = 0;
  let hash = createHash('sha256');
  const out: UploadMessage[] = [];
  for (const m of messages) {
    if (!m.chunk) {
      out.push(m);
      continue;
    }
    const data = Buffer.from(m.chunk.data as Uint8Array);
    out.push({ chunk: { ...m.chunk, crc32c: m.chunk.crc32c ?? crc32c(data) } });
    if (!addDigests) continue;
    let at = Number(m.chunk.offset);
    const end = at + data.length;
    while (piece < pieces.length && at < end) {
      const p = pieces[piece]!;
      const to = Math.min(end, p.end);
      if (to > at) hash.update(data.subarray(at - Number(m.chunk.offset), to - Number(m.chunk.offset)));
      at = Math.max(at, to);
      if (to !== p.end) break;
      out.push({ digest: { tensor: p.tensor, sha256: hash.digest('hex') } });
      hash = createHash('sha256');
      piece++;
    }
  }
  return out;
}

/** Runs one `Upload` stream: writes `messages` (honouring 'drain'), stops at the result or error. */
export function runUploadStream(client: SiteServiceClient, messages: readonly UploadMessage[], timeoutMs: number, cancelAfter?: number): Promise<UploadStreamOutcome> {
  const call = client.Upload({ deadline: Date.now() + timeoutMs });
  const replies: UploadReply__Output[] = [];
  let settled = false;
  const done = new Promise<UploadStreamOutcome>((resolve) => {
    const finish = (outcome: CallOutcome<UploadResult__Output>): void => {
      if (settled) return;
      settled = true;
      resolve({ outcome, replies });
    };
    call.on('data', (r: UploadReply__Output) => {
      replies.push(r);
      if (r.result) {
        call.end();
        finish({ ok: true, value: r.result });
      }
    });
    call.on('error', (err: grpc.ServiceError) => finish({ ok: false, error: err }));
    call.on('end', () => finish({ ok: false, error: emptyResponse() }));
  });
  void (async () => {
    let sent = 0;
    for (const message of messages) {
      if (settled) return;
      if (cancelAfter !== undefined && sent >= cancelAfter) {
        call.cancel();
        return;
      }
      if (!call.write(message)) await Promise.race([once(call, 'drain').catch(() => undefined), done]);
      sent++;
    }
    if (!settled) call.end();
  })();
  return done;
}

/** An `Upload` stream a test drives by hand: write, wait for replies, end or cancel. */
export class UploadStream {
  readonly replies: UploadReply__Output[] = [];
  /** The result or the error the stream ended with. */
  readonly outcome: Promise<CallOutcome<UploadResult__Output>>;
  private readonly waiters = new Set<() => void>();
  private ended = false;

  constructor(private readonly call: grpc.ClientDuplexStream<UploadMessage, UploadReply__Output>) {
    this.outcome = new Promise((resolve) => {
      call.on('data', (r: UploadReply__Output) => {
        this.replies.push(r);
        if (r.result) resolve({ ok: true, value: r.result });
        this.wake();
      });
      call.on('error', (err: grpc.ServiceError) => {
        this.ended = true;
        resolve({ ok: false, error: err });
        this.wake();
      });
      call.on('end', () => {
        this.ended = true;
        resolve({ ok: false, error: emptyResponse() });
        this.wake();
      });
    });
  }

  /** Writes messages as given (no CRC or digest filled in), honouring 'drain'. */
  async write(...messages: UploadMessage[]): Promise<void> {
    for (const m of messages) if (!this.call.write(m)) await Promise.race([once(this.call, 'drain'), this.outcome]);
  }

  /**
   * Resolves with the first reply for which `pick` gives a value (waiting for it); rejects when the
   * stream ends first. An absent oneof field reads `null` (proto-loader's defaults): not a match.
   */
  async reply<T>(pick: (r: UploadReply__Output) => T | null | undefined, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const r of this.replies) {
        const v = pick(r);
        if (v !== undefined && v !== null) return v;
      }
      if (this.ended) throw new Error(`upload stream ended without the awaited reply: ${JSON.stringify(await this.outcome)}`);
      if (Date.now() > deadline) throw new Error('timed out waiting for an upload reply');
      await new Promise<void>((r) => {
        this.waiters.add(r);
        setTimeout(r, 200);
      });
    }
  }

  end(): void {
    this.call.end();
  }

  cancel(): void {
    this.call.cancel();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
    this.waiters.clear();
  }
}
