/**
 * The receiving side of the transport benchmarks, run in the bench process: a gRPC server built
 * exactly as the coordinator builds its own (same options, same receive-window fix) whose
 * `SiteService.Upload` handler checks every chunk's CRC32C and drops the bytes, and a plain mTLS
 * socket server that CRC32Cs and drops the same bytes. Neither writes to disk: the benchmarks
 * measure the transport, not the spool.
 */
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { once } from 'node:events';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createGrpcServer } from '../../common/grpc-window.js';
import type { TlsMaterial } from '../../common/tls.js';
import { SERVER_CHANNEL_OPTIONS } from '../../coordinator/index.js';
import { loadProto, recycleReceived, type UploadMessage__Output, type UploadReply } from '../../proto/index.js';

/** What the receivers do with the bytes, for the bench's output. */
export const SINK_DESCRIPTION = 'receiver checks CRC32C of every chunk (@node-rs/crc32) and discards the bytes (no spool, no decode; the gRPC receiver hands each chunk\'s memory back, as the coordinator does)';

/** Bytes of the raw-TLS stream's header (total bytes, u64 BE) and reply (received u64 BE, CRC32C u32 BE). */
export const TLS_HEADER_BYTES = 8;
export const TLS_REPLY_BYTES = 12;

/** A listening receiver. */
export interface Sink {
  readonly port: number;
  close(): Promise<void>;
}

/** Options of {@link startGrpcSink}. */
export interface GrpcSinkOptions {
  readonly tls: TlsMaterial;
  /** Build the server as the coordinator does (true) or as grpc-js ships, with a 64 KiB window (false). */
  readonly windowFix: boolean;
  /** Bytes the sender may have unacknowledged (`UploadAccepted.window_bytes`). */
  readonly ackWindowBytes: number;
}

/** Upload handler: accept the header, CRC-check and acknowledge each chunk, answer the trailer. */
function sinkUpload(ackWindowBytes: number): grpc.handleBidiStreamingCall<UploadMessage__Output, UploadReply> {
  return (call) => {
    let received = 0;
    let crcFailures = 0;
    call.on('data', (m: UploadMessage__Output) => {
      if (m.kind === 'header' && m.header) {
        call.write({ accepted: { offset: '0', chunkBytes: m.header.chunkBytes, windowBytes: String(ackWindowBytes) } });
      } else if (m.kind === 'chunk' && m.chunk) {
        if (crc32c(m.chunk.data) !== m.chunk.crc32c) crcFailures++;
        received += m.chunk.data.length;
        // Done with the bytes: their memory goes back for a later chunk, as the coordinator's does
        // once a chunk is spooled and hashed.
        recycleReceived(m.chunk.data);
        call.write({ ack: { offset: String(received) } });
      } else if (m.kind === 'trailer') {
        const message = `${crcFailures} chunk(s) failed CRC32C`;
        call.write({ result: { accepted: crcFailures === 0, complete: crcFailures === 0, receivedBytes: String(received), message } });
        call.end();
      }
    });
    // A sender that dies mid-stream is the sender's failure to report, not the sink's.
    call.on('error', () => undefined);
  };
}

/** Starts the gRPC receiver on a free loopback port. */
export async function startGrpcSink(o: GrpcSinkOptions): Promise<Sink> {
  const server = o.windowFix ? createGrpcServer(SERVER_CHANNEL_OPTIONS) : new grpc.Server(SERVER_CHANNEL_OPTIONS);
  server.addService(loadProto().fedhpc.v1.SiteService.service, { Upload: sinkUpload(o.ackWindowBytes) });
  const credentials = grpc.ServerCredentials.createSsl(o.tls.ca, [{ cert_chain: o.tls.cert, private_key: o.tls.key }], true);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))));
  return {
    port,
    close: async () => server.forceShutdown(),
  };
}

/** One raw-TLS upload: a u64 length, then the bytes; answered with the count and their CRC32C. */
function sinkConnection(socket: tls.TLSSocket): void {
  let header = Buffer.alloc(0);
  let total = -1;
  let received = 0;
  let crc = 0;
  socket.on('data', (data: Buffer) => {
    if (total < 0) {
      header = Buffer.concat([header, data]);
      if (header.length < TLS_HEADER_BYTES) return;
      total = Number(header.readBigUInt64BE(0));
      data = header.subarray(TLS_HEADER_BYTES);
    }
    crc = crc32c(data, crc);
    received += data.length;
    if (received >= total) {
      const reply = Buffer.alloc(TLS_REPLY_BYTES);
      reply.writeBigUInt64BE(BigInt(received), 0);
      reply.writeUInt32BE(crc >>> 0, 8);
      socket.end(reply);
    }
  });
  socket.on('error', () => undefined);
}

/** Starts the raw mTLS receiver on a free loopback port. */
export async function startTlsSink(material: TlsMaterial): Promise<Sink> {
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer({ ca: material.ca, cert: material.cert, key: material.key, requestCert: true, rejectUnauthorized: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    sinkConnection(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
