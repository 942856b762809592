/** Small helpers for grpc-js streams: backpressure-aware writes and cancellable reads. */
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import type { Clock } from '../core/clock.js';
import { CoordinatorError } from '../core/errors.js';

/** Writes one message, waiting for 'drain' when the stream's buffer is full. */
export async function writeWithBackpressure<T>(stream: Writable, message: T, signal?: AbortSignal): Promise<void> {
  if (stream.write(message)) return;
  try {
    await once(stream, 'drain', signal ? { signal } : {});
  } catch (err) {
    if (signal?.aborted) {
      throw signal.reason instanceof CoordinatorError ? signal.reason : new CoordinatorError('UPLOAD_INTERRUPTED', 'the peer stopped taking data', {}, { cause: err });
    }
    throw err;
  }
}

/**
 * Iterates the messages of a client stream, each converted by `convert` (the wire edge: a message
 * it refuses fails the read). The iteration throws when the client cancels, when `signal` aborts
 * (with its reason), or when no message arrives for `idleMs` on `clock` (no progress).
 */
export function readMessages<W, T>(
  stream: Readable & { on(event: 'cancelled', fn: () => void): unknown },
  signal: AbortSignal,
  idleMs: number,
  clock: Clock,
  convert: (message: W) => T,
): AsyncIterator<T> & { dispose(): void; touch(): void } {
  let cancelIdle: (() => void) | undefined;
  // Failing rejects the pending and every later `next()` instead of destroying the stream, so the
  // handler can still end the call with a status the client sees. Each `next()` gets its own
  // promise: racing every read against one long-lived "failed" promise would leave a reaction per
  // read on it, each holding the message it resolved with — a whole upload's chunks kept alive.
  let failure: Error | undefined;
  let rejectPending: ((err: Error) => void) | undefined;
  const fail = (err: Error): void => {
    failure ??= err;
    rejectPending?.(failure);
  };
  const arm = (): void => {
    cancelIdle?.();
    cancelIdle = clock.setTimer(idleMs, () => fail(new CoordinatorError('UPLOAD_INTERRUPTED', `no data for ${idleMs / 1000} s`)));
  };
  const onAbort = (): void => fail(signal.reason instanceof Error ? signal.reason : new CoordinatorError('ROUND_CLOSED', String(signal.reason)));
  signal.addEventListener('abort', onAbort, { once: true });
  stream.on('cancelled', () => fail(new CoordinatorError('UPLOAD_INTERRUPTED', 'the client cancelled the stream')));
  const inner = stream[Symbol.asyncIterator]() as AsyncIterator<W>;
  arm();
  return {
    next() {
      if (failure) return Promise.reject(failure);
      return new Promise<IteratorResult<T>>((resolve, reject) => {
        rejectPending = reject;
        inner.next().then(
          (r) => {
            rejectPending = undefined;
            arm();
            try {
              resolve(r.done ? r : { done: false, value: convert(r.value) });
            } catch (err) {
              reject(err as Error);
            }
          },
          (err: unknown) => {
            rejectPending = undefined;
            reject(err as Error);
          },
        );
      });
    },
    /** Restarts the idle timer: the handler itself is holding the client up (e.g. queued). */
    touch() {
      if (!failure) arm();
    },
    dispose() {
      cancelIdle?.();
      fail(new CoordinatorError('UPLOAD_INTERRUPTED', 'stream closed'));
      signal.removeEventListener('abort', onAbort);
    },
  };
}
