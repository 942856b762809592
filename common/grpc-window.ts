/**
 * HTTP/2 receive windows for grpc-js servers.
 *
 * grpc-js 1.14 honours `grpc-node.flow_control_window` on clients only; its server keeps Node's
 * default 64 KiB window, so a sender can have at most 64 KiB in flight per connection and an upload
 * moves at most 64 KiB per round trip (about 2 MB/s at 30 ms). {@link createGrpcServer} makes a
 * server honour the option the way the pending upstream change does (grpc/grpc-node#3058): the
 * SETTINGS frame advertises the window for every stream, and each new session raises its
 * connection-level window with `setLocalWindowSize`. It does so by a small patch of one grpc-js
 * instance, checked against the grpc-js version and shape it was written for; if either differs it
 * throws at start-up rather than silently serving with the small window. When upstream ships the
 * server option, delete the patch and keep the option.
 *
 * The window bounds how many bytes one connection may push before the receiver reads them: it is
 * memory the coordinator may hold per site connection when a reader is slower than the link.
 */
import * as grpc from '@grpc/grpc-js';
import type * as http2 from 'node:http2';
import { createRequire } from 'node:module';

/** The grpc-js channel option (clients) that {@link createGrpcServer} also honours on servers. */
export const FLOW_CONTROL_WINDOW_OPTION = 'grpc-node.flow_control_window';

/**
 * Default receive window per connection and per stream: 64 MiB, which covers the bandwidth-delay
 * product of a 10 Gbit/s link at 40 ms (50 MB) with room to spare.
 */
export const DEFAULT_FLOW_CONTROL_WINDOW_BYTES = 64 * 1024 * 1024;

/** HTTP/2's initial window (RFC 9113 §6.9.2): the smallest window worth asking for. */
export const HTTP2_DEFAULT_WINDOW_BYTES = 65_535;

/** HTTP/2's largest window (RFC 9113 §6.9.1). */
export const HTTP2_MAX_WINDOW_BYTES = 2 ** 31 - 1;

/** grpc-js versions whose server internals the patch below was read against. */
const CHECKED_GRPC_JS_VERSIONS = /^1\.14\.\d+$/;

/** Stable codes of {@link GrpcWindowError}. */
export const GrpcWindowErrorCode = {
  /** The requested window is not an integer in [65535, 2^31 − 1]. */
  InvalidWindow: 'GRPC_WINDOW_INVALID',
  /** The installed grpc-js is not the version or shape the server patch was written for. */
  Unsupported: 'GRPC_WINDOW_UNSUPPORTED',
} as const;
export type GrpcWindowErrorCode = (typeof GrpcWindowErrorCode)[keyof typeof GrpcWindowErrorCode];

/** Thrown when a window is out of range or grpc-js cannot be patched; never retried. */
export class GrpcWindowError extends Error {
  constructor(
    readonly code: GrpcWindowErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'GrpcWindowError';
  }
}

/** The grpc-js 1.14 `Server` members the patch touches (private in its typings). */
interface GrpcServerInternals {
  commonServerOptions: http2.ServerOptions;
  _setupHandlers(this: grpc.Server, http2Server: http2.Http2Server | http2.Http2SecureServer, extraInterceptors: unknown): void;
}

/** Returns `bytes` when it is a valid HTTP/2 window; throws {@link GrpcWindowError} otherwise. */
export function validateFlowControlWindow(bytes: unknown): number {
  if (typeof bytes !== 'number' || !Number.isInteger(bytes) || bytes < HTTP2_DEFAULT_WINDOW_BYTES || bytes > HTTP2_MAX_WINDOW_BYTES) {
    throw new GrpcWindowError(
      GrpcWindowErrorCode.InvalidWindow,
      `${FLOW_CONTROL_WINDOW_OPTION} must be an integer from ${HTTP2_DEFAULT_WINDOW_BYTES} to ${HTTP2_MAX_WINDOW_BYTES} bytes, got ${String(bytes)}`,
    );
  }
  return bytes;
}

/** The installed grpc-js version, read from its package.json. */
export function installedGrpcJsVersion(): string {
  const require = createRequire(import.meta.url);
  const pkg = require('@grpc/grpc-js/package.json') as { version?: unknown };
  return String(pkg.version);
}

/**
 * Creates a grpc-js server that honours {@link FLOW_CONTROL_WINDOW_OPTION} like clients do. Without
 * the option it is a plain `new grpc.Server(options)`. Throws {@link GrpcWindowError} when the
 * window is invalid or the installed grpc-js is not one the patch was checked against.
 */
export function createGrpcServer(options: grpc.ServerOptions): grpc.Server {
  const window = options[FLOW_CONTROL_WINDOW_OPTION];
  const server = new grpc.Server(options);
  if (window !== undefined) raiseServerWindow(server, validateFlowControlWindow(window));
  return server;
}

/**
 * Makes every HTTP/2 session `server` accepts from now on receive with a `bytes` window, per
 * stream and per connection. Call before `bindAsync`. Exported for tests of the version guard.
 */
export function raiseServerWindow(server: grpc.Server, bytes: number, grpcJsVersion = installedGrpcJsVersion()): void {
  const window = validateFlowControlWindow(bytes);
  const internals = server as unknown as Partial<GrpcServerInternals>;
  if (!CHECKED_GRPC_JS_VERSIONS.test(grpcJsVersion) || typeof internals.commonServerOptions !== 'object' || typeof internals._setupHandlers !== 'function') {
    throw new GrpcWindowError(
      GrpcWindowErrorCode.Unsupported,
      `cannot raise the server's HTTP/2 window: common/grpc-window.ts was written for grpc-js 1.14 (Server.commonServerOptions and ` +
        `Server._setupHandlers) and found grpc-js ${grpcJsVersion}; re-read its server.js (or use its own server option if upstream ` +
        `grpc/grpc-node#3058 has shipped) and update the patch`,
    );
  }
  const common = internals.commonServerOptions;
  // grpc-js spreads these into http2.createSecureServer for every port bound later.
  common.settings = { ...common.settings, initialWindowSize: window };
  const setupHandlers = internals._setupHandlers;
  internals._setupHandlers = function (this: grpc.Server, http2Server, extraInterceptors) {
    // Prepended so the WINDOW_UPDATE goes out with the server's first SETTINGS, before any stream.
    http2Server.prependListener('session', (session: http2.ServerHttp2Session) => raiseSessionWindow(session, window));
    setupHandlers.call(this, http2Server, extraInterceptors);
  };
}

/** Raises one session's connection-level receive window; a session already gone is left alone. */
function raiseSessionWindow(session: http2.Http2Session, window: number): void {
  if (session.destroyed || session.closed) return;
  session.setLocalWindowSize(window);
}

/** Client channel options that receive with a `bytes` window (grpc-js honours this on clients). */
export function clientWindowOptions(bytes = DEFAULT_FLOW_CONTROL_WINDOW_BYTES): grpc.ChannelOptions {
  return { [FLOW_CONTROL_WINDOW_OPTION]: validateFlowControlWindow(bytes) };
}
