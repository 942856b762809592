/**
 * Any RPC of the fedhpc proto, called with raw bytes: a grpc-js client with identity serializers,
 * built from any certificate files (or none). Tests that enumerate the services (authorization
 * matrix, fuzzing) use it so RPCs added to the proto are covered without editing the tests.
 */
import * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { readFileSync } from 'node:fs';
import { loadPackageDefinition } from '../../proto/index.js';
import type { CertFiles } from './raw-site.js';

/** One RPC of the proto: its service, name, path and streaming shape. */
export interface RpcInfo {
  readonly service: string;
  readonly method: string;
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  /** Fully qualified name of the request message, e.g. `fedhpc.v1.JoinRequest`. */
  readonly requestType: string;
}

/** Every RPC of every fedhpc service in the loaded package definition. */
export function allRpcs(): RpcInfo[] {
  const def = loadPackageDefinition();
  const out: RpcInfo[] = [];
  for (const [name, entry] of Object.entries(def)) {
    if (!name.startsWith('fedhpc.') || 'format' in entry) continue;
    for (const [method, m] of Object.entries(entry as protoLoader.ServiceDefinition)) {
      const typeName = (m.requestType.type as { name: string }).name;
      out.push({
        service: name.slice(name.lastIndexOf('.') + 1),
        method,
        path: m.path,
        requestStream: m.requestStream,
        responseStream: m.responseStream,
        requestType: `${name.slice(0, name.lastIndexOf('.'))}.${typeName}`,
      });
    }
  }
  return out;
}

/** How one call ended: its status code and details (OK with the first response for unary calls). */
export interface RawOutcome {
  readonly code: grpc.status;
  readonly details: string;
  /** The `fedhpc-error-code` metadata value, when the coordinator sent one. */
  readonly fedhpcCode: string | undefined;
  /** The `fedhpc-leader` metadata value (a standby's NOT_LEADER naming the leader), when sent. */
  readonly leader?: string | undefined;
  /** Responses received before the status. */
  readonly responses: number;
}

const identity = (b: Buffer): Buffer => b;

/** A client that sends raw request bytes to any method, authenticated by `files` (or by nothing). */
export class RawRpcClient {
  private readonly client: grpc.Client;

  constructor(address: string, files: CertFiles | { readonly ca: string }, options: grpc.ChannelOptions = {}) {
    const ca = readFileSync(files.ca);
    const creds =
      'cert' in files
        ? grpc.credentials.createSsl(ca, readFileSync(files.key), readFileSync(files.cert))
        : grpc.credentials.createSsl(ca);
    this.client = new grpc.Client(address, creds, { 'grpc.enable_http_proxy': 0, ...options });
  }

  /**
   * Calls `rpc` with `messages` (one for unary and server-streaming calls; any number for client
   * streams) and resolves with how the call ended; never rejects. Streams still open at
   * `deadlineMs` end with DEADLINE_EXCEEDED; `signal` cancels the call (CANCELLED).
   */
  call(rpc: RpcInfo, messages: readonly Buffer[], deadlineMs: number, signal?: AbortSignal): Promise<RawOutcome> {
    const deadline = Date.now() + deadlineMs;
    return new Promise((resolve) => {
      let responses = 0;
      const finish = (err: grpc.ServiceError | null): void => {
        const codes = err?.metadata?.get('fedhpc-error-code') ?? [];
        const leaders = err?.metadata?.get('fedhpc-leader') ?? [];
        resolve({
          code: err ? err.code : grpc.status.OK,
          details: err ? err.details : '',
          fedhpcCode: codes.length > 0 ? String(codes[0]) : undefined,
          leader: leaders.length > 0 ? String(leaders[0]) : undefined,
          responses,
        });
      };
      const onStatus = (s: grpc.StatusObject): void => {
        if (s.code === grpc.status.OK) finish(null);
      };
      if (!rpc.requestStream && !rpc.responseStream) {
        const call = this.client.makeUnaryRequest(rpc.path, identity, identity, messages[0] ?? Buffer.alloc(0), { deadline }, (err) => {
          if (!err) responses += 1;
          finish(err);
        });
        signal?.addEventListener('abort', () => call.cancel());
      } else if (!rpc.requestStream) {
        const call = this.client.makeServerStreamRequest(rpc.path, identity, identity, messages[0] ?? Buffer.alloc(0), { deadline });
        call.on('data', () => (responses += 1));
        call.on('error', finish);
        call.on('status', onStatus);
        signal?.addEventListener('abort', () => call.cancel());
      } else {
        const call = rpc.responseStream
          ? this.client.makeBidiStreamRequest(rpc.path, identity, identity, { deadline })
          : this.client.makeClientStreamRequest(rpc.path, identity, identity, { deadline }, (err) => finish(err));
        call.on('data', () => (responses += 1));
        call.on('error', (err: grpc.ServiceError) => finish(err));
        if (rpc.responseStream) call.on('status', onStatus);
        signal?.addEventListener('abort', () => call.cancel());
        for (const m of messages) call.write(m);
        call.end();
      }
    });
  }

  close(): void {
    this.client.close();
  }
}

/** Encodes `value` as the request message of `rpc` (proto-loader's serializer: camelCase fields). */
export function encodeRequest(rpc: RpcInfo, value: Record<string, unknown>): Buffer {
  const service = loadPackageDefinition()[`fedhpc.v1.${rpc.service}`] as protoLoader.ServiceDefinition;
  return service[rpc.method]!.requestSerialize(value);
}

/** The RPC `Service/Method` of the proto; throws when the proto has no such RPC. */
export function rpcNamed(name: string): RpcInfo {
  const rpc = allRpcs().find((r) => `${r.service}/${r.method}` === name);
  if (!rpc) throw new Error(`the proto has no RPC ${name}`);
  return rpc;
}
