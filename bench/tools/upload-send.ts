/**
 * The sending side of the transport benchmarks, run in a child process per site: a gRPC upload over
 * the site agent's own client (`createSiteClient`: mTLS, channel options, receive window) with
 * `SiteService.Upload` messages — header, CRC32C'd chunks within the acknowledged window, trailer;
 * the chunks in buffers made as the delta encoder makes its own, so each message is written around
 * its data as the agent's are — and a raw mTLS socket writing the same bytes. Each connects first
 * (`prepare`) and moves {@link WARM_UP_CHUNKS} chunks once (on its own TLS connection, for raw
 * TLS), so that `run` times the transfer only: not process start-up, the TLS handshake, or the first
 * calls of the code paths, which V8 compiles then (grpc-js and protobufjs compile most of theirs on
 * first use).
 */
import type * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { randomBytes, randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import * as tls from 'node:tls';
import type { TlsFiles } from '../../common/tls.js';
import { readTlsFiles } from '../../common/tls.js';
import { DEFAULT_FLOW_CONTROL_WINDOW_BYTES } from '../../common/grpc-window.js';
import { chunkDataBuffer, type SiteServiceClient, type UploadMessage, type UploadReply__Output } from '../../proto/index.js';
import { createSiteClient } from '../../site-agent/index.js';
import { TLS_HEADER_BYTES, TLS_REPLY_BYTES } from './upload-sink.js';

/** Options of one sender. */
export interface SendOptions {
  readonly transport: 'grpc' | 'tls';
  readonly host: string;
  readonly port: number;
  readonly tls: TlsFiles;
  readonly bytes: number;
  readonly chunkBytes: number;
  /** Wall-clock limit of the transfer; past it the sender fails. */
  readonly deadlineMs: number;
}

/** What one sender measured (epoch milliseconds, comparable across processes on one machine). */
export interface SendResult {
  readonly bytes: number;
  readonly startMs: number;
  readonly endMs: number;
  /** CPU time (user + system, all threads) the sender process used during the transfer. */
  readonly cpuMs: number;
}

/** A connected sender; `run` moves the bytes once. */
export interface Sender {
  run(): Promise<Omit<SendResult, 'cpuMs'>>;
  close(): void;
}

/** Chunks each sender moves while it prepares, before the clock starts. */
export const WARM_UP_CHUNKS = 4;

/**
 * Distinct chunks each sender cycles through, made before the clock starts: enough for the
 * acknowledged window (at most the HTTP/2 window) and the chunk being sent, so the gRPC sender's
 * ring never waits, and as many for raw TLS, so both read the same amount of memory.
 */
function chunkCount(chunkBytes: number): number {
  return Math.ceil(DEFAULT_FLOW_CONTROL_WINDOW_BYTES / chunkBytes) + 2;
}

/** Distinct random chunks, cycled: incompressible, made before the clock starts. */
function payload(chunkBytes: number): Buffer[] {
  return Array.from({ length: chunkCount(chunkBytes) }, () => randomBytes(chunkBytes));
}

/**
 * The gRPC sender's chunks, random bytes made before the clock starts in buffers the delta encoder
 * would make them in (`chunkDataBuffer`): the agent's codec writes each chunk message around its
 * data, with no copy, as it does for the agent's own chunks. A buffer is used again only once
 * grpc-js is done with the message around it (the write's callback: written, or dropped with a
 * failed call), since its next message's framing is written into the same room. The sender never
 * has more unwritten chunks than {@link chunkCount} allows for, so the ring does not make it wait.
 */
class ChunkRing {
  private readonly free: Buffer[];
  private wake: (() => void) | undefined;

  constructor(chunkBytes: number) {
    this.free = Array.from({ length: chunkCount(chunkBytes) }, () => randomFillSync(chunkDataBuffer(chunkBytes)));
  }

  /** A chunk's buffer, once one is free. */
  async take(): Promise<Buffer> {
    for (;;) {
      const b = this.free.pop();
      if (b) return b;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Hands `b` back for a later chunk. */
  give(b: Buffer): void {
    this.free.push(b);
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

/** Connects a sender for `o.transport`. */
export function prepareSender(o: SendOptions): Promise<Sender> {
  return o.transport === 'grpc' ? prepareGrpc(o) : prepareTls(o);
}

async function prepareGrpc(o: SendOptions): Promise<Sender> {
  const client = createSiteClient({ coordinator: `${o.host}:${o.port}`, serverName: 'localhost', tls: o.tls });
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 30_000, (err) => (err ? reject(err) : resolve())));
  const ring = new ChunkRing(o.chunkBytes);
  await grpcUpload(client, ring, { ...o, bytes: Math.min(o.bytes, WARM_UP_CHUNKS * o.chunkBytes) });
  return { run: () => grpcUpload(client, ring, o), close: () => client.close() };
}

/** The coordinator's replies on one Upload stream, and waiting on them. */
class Replies {
  window = -1;
  acked = 0;
  result: UploadReply__Output['result'];
  failure: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(call: grpc.ClientDuplexStream<UploadMessage, UploadReply__Output>) {
    call.on('data', (r: UploadReply__Output) => {
      if (r.accepted) this.window = Number(r.accepted.windowBytes);
      if (r.ack) this.acked = Number(r.ack.offset);
      if (r.result) this.result = r.result;
      this.changed();
    });
    call.on('error', (err: grpc.ServiceError) => {
      this.failure = err;
      this.changed();
    });
  }

  /** Resolves once `done` holds; the call's deadline ends every wait with an error. */
  async until(done: () => boolean): Promise<void> {
    while (!done()) {
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private changed(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

/** One Upload stream: never more than the coordinator's acknowledged window in flight. */
async function grpcUpload(client: SiteServiceClient, ring: ChunkRing, o: SendOptions): Promise<Omit<SendResult, 'cpuMs'>> {
  const startMs = Date.now();
  const call = client.Upload({ deadline: startMs + o.deadlineMs });
  const replies = new Replies(call);
  // A chunk's buffer goes back once grpc-js is done with it: written, or dropped with the call.
  const send = async (m: UploadMessage, done?: () => void): Promise<void> => {
    if (done ? call.write(m, () => done()) : call.write(m)) return;
    if (replies.failure) throw replies.failure;
    await once(call, 'drain'); // rejects if the call fails meanwhile
  };
  await send({ header: { runId: 'bench', round: '1', attempt: 1, totalBytes: String(o.bytes), chunkBytes: o.chunkBytes } });
  await replies.until(() => replies.window >= 0);
  for (let offset = 0; offset < o.bytes; offset += o.chunkBytes) {
    const bytes = Math.min(o.chunkBytes, o.bytes - offset);
    await replies.until(() => offset + bytes - replies.acked <= replies.window);
    const whole = await ring.take();
    // A short last chunk is a view, which the codec copies; every other chunk is written in place.
    const data = bytes === whole.length ? whole : whole.subarray(0, bytes);
    await send({ chunk: { offset, data, crc32c: crc32c(data) } }, () => ring.give(whole));
  }
  await send({ trailer: { sha256: '' } });
  call.end();
  await replies.until(() => replies.result !== undefined);
  const result = replies.result;
  if (!result?.accepted || Number(result.receivedBytes) !== o.bytes) {
    throw new Error(`upload refused: ${result?.receivedBytes} of ${o.bytes} bytes, ${result?.message}`);
  }
  return { bytes: o.bytes, startMs, endMs: Date.now() };
}

async function prepareTls(o: SendOptions): Promise<Sender> {
  const m = readTlsFiles(o.tls);
  const connect = async (): Promise<tls.TLSSocket> => {
    const socket = tls.connect({ host: o.host, port: o.port, ca: m.ca, cert: m.cert, key: m.key, servername: 'localhost' });
    await once(socket, 'secureConnect');
    return socket;
  };
  const blocks = payload(o.chunkBytes);
  // The receiver takes one upload per connection: the warm-up has its own.
  const warm = await connect();
  try {
    await tlsUpload(warm, blocks, { ...o, bytes: Math.min(o.bytes, WARM_UP_CHUNKS * o.chunkBytes) });
  } finally {
    warm.destroy();
  }
  const socket = await connect();
  return { run: () => tlsUpload(socket, blocks, o), close: () => socket.destroy() };
}

/** The same bytes, CRC32C'd per chunk as the gRPC sender does, over one TLS socket. */
async function tlsUpload(socket: tls.TLSSocket, blocks: readonly Buffer[], o: SendOptions): Promise<Omit<SendResult, 'cpuMs'>> {
  const replyChunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => replyChunks.push(d));
  const ended = once(socket, 'end');
  const timer = setTimeout(() => socket.destroy(new Error(`raw TLS upload exceeded ${o.deadlineMs} ms`)), o.deadlineMs);
  try {
    const startMs = Date.now();
    const header = Buffer.alloc(TLS_HEADER_BYTES);
    header.writeBigUInt64BE(BigInt(o.bytes));
    socket.write(header);
    let crc = 0;
    for (let offset = 0, i = 0; offset < o.bytes; offset += o.chunkBytes, i++) {
      const data = blocks[i % blocks.length]!.subarray(0, Math.min(o.chunkBytes, o.bytes - offset));
      crc = crc32c(data, crc);
      if (!socket.write(data)) await once(socket, 'drain');
    }
    await ended;
    const reply = Buffer.concat(replyChunks);
    if (reply.length !== TLS_REPLY_BYTES || Number(reply.readBigUInt64BE(0)) !== o.bytes || reply.readUInt32BE(8) !== crc >>> 0) {
      throw new Error(`raw TLS upload not confirmed: reply of ${reply.length} bytes`);
    }
    return { bytes: o.bytes, startMs, endMs: Date.now() };
  } finally {
    clearTimeout(timer);
  }
}
