/**
 * Validation and the version guard of common/grpc-window.ts. That a real server's sessions get the
 * window is shown over mTLS in test/integration/grpc-window.test.ts.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_FLOW_CONTROL_WINDOW_BYTES,
  FLOW_CONTROL_WINDOW_OPTION,
  GrpcWindowError,
  GrpcWindowErrorCode,
  HTTP2_MAX_WINDOW_BYTES,
  clientWindowOptions,
  createGrpcServer,
  installedGrpcJsVersion,
  raiseServerWindow,
  validateFlowControlWindow,
} from '../../../common/grpc-window.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GrpcWindowError);
    return (err as GrpcWindowError).code;
  }
  return undefined;
}

describe('validateFlowControlWindow', () => {
  it('accepts every HTTP/2 window from the default 65535 up to 2^31 - 1', () => {
    for (const w of [65_535, DEFAULT_FLOW_CONTROL_WINDOW_BYTES, HTTP2_MAX_WINDOW_BYTES]) expect(validateFlowControlWindow(w)).toBe(w);
  });

  it.each([0, 65_534, HTTP2_MAX_WINDOW_BYTES + 1, 1.5e6 + 0.5, Number.NaN, Number.POSITIVE_INFINITY, '67108864', undefined])(
    'refuses %s with GRPC_WINDOW_INVALID',
    (w) => {
      expect(codeOf(() => validateFlowControlWindow(w))).toBe(GrpcWindowErrorCode.InvalidWindow);
    },
  );
});

describe('createGrpcServer', () => {
  it('refuses a server option outside the HTTP/2 range before building anything', () => {
    expect(codeOf(() => createGrpcServer({ [FLOW_CONTROL_WINDOW_OPTION]: 1024 }))).toBe(GrpcWindowErrorCode.InvalidWindow);
  });

  it('builds a plain grpc-js server when the option is absent', () => {
    const server = createGrpcServer({});
    expect(server).toBeInstanceOf(grpc.Server);
    server.forceShutdown();
  });
});

describe('raiseServerWindow version guard', () => {
  it('is checked against the grpc-js that is installed (1.14)', () => {
    expect(installedGrpcJsVersion()).toMatch(/^1\.14\.\d+$/);
  });

  it('refuses another grpc-js version loudly instead of serving with a 64 KiB window', () => {
    const server = new grpc.Server();
    expect(codeOf(() => raiseServerWindow(server, DEFAULT_FLOW_CONTROL_WINDOW_BYTES, '1.15.0'))).toBe(GrpcWindowErrorCode.Unsupported);
    server.forceShutdown();
  });

  it('refuses a server whose internals are not the ones the patch was written for', () => {
    const lookalike = {} as unknown as grpc.Server;
    expect(codeOf(() => raiseServerWindow(lookalike, DEFAULT_FLOW_CONTROL_WINDOW_BYTES, '1.14.7'))).toBe(GrpcWindowErrorCode.Unsupported);
  });
});

describe('clientWindowOptions', () => {
  it('sets the grpc-js client option to 64 MiB by default', () => {
    expect(clientWindowOptions()).toEqual({ [FLOW_CONTROL_WINDOW_OPTION]: DEFAULT_FLOW_CONTROL_WINDOW_BYTES });
  });

  it('refuses a window HTTP/2 cannot carry', () => {
    expect(codeOf(() => clientWindowOptions(2 ** 31))).toBe(GrpcWindowErrorCode.InvalidWindow);
  });
});
