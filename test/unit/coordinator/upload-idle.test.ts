/** The idle (no-progress) timeouts of upload sessions and streams, on an injected clock. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { readMessages } from '../../../coordinator/service/streams.js';
import type { UploadIntent } from '../../../coordinator/upload/header.js';
import { UploadSession } from '../../../coordinator/upload/session.js';
import { ManualClock } from '../../helpers/clock.js';
import { uploadIntent } from '../../helpers/upload-intent.js';

const IDLE_MS = 60_000;

const INTENT: UploadIntent = uploadIntent(4, { chunkBytes: 16 });

function session(clock: ManualClock, onIdle: (s: UploadSession) => void): UploadSession {
  return new UploadSession({ site: 'site-1', intent: INTENT, path: '/nonexistent/site-1.delta', idleMs: IDLE_MS, onIdle, clock });
}

describe('UploadSession idle timeout', () => {
  it('ends a session that makes no progress for the idle timeout, and not a moment before', () => {
    const clock = new ManualClock();
    const idle: UploadSession[] = [];
    const s = session(clock, (x) => idle.push(x));
    clock.advance(IDLE_MS - 1);
    expect(idle).toEqual([]);
    clock.advance(1);
    expect(idle).toEqual([s]);
  });

  it('restarts the timeout on every progress', () => {
    const clock = new ManualClock();
    let idle = 0;
    const s = session(clock, () => idle++);
    for (let i = 0; i < 5; i++) {
      clock.advance(IDLE_MS - 1);
      s.progressed();
    }
    expect(idle).toBe(0);
    expect(clock.pending).toBe(1); // one timer, re-armed, not one per progress
    clock.advance(IDLE_MS);
    expect(idle).toBe(1);
  });

  it('stops its timer when closed, and progress after that does not re-arm it', () => {
    const clock = new ManualClock();
    let idle = 0;
    const s = session(clock, () => idle++);
    s.close(new CoordinatorError('ROUND_CLOSED', 'upload complete'));
    s.progressed();
    expect(clock.pending).toBe(0);
    clock.advance(10 * IDLE_MS);
    expect(idle).toBe(0);
  });
});

/** A client stream as grpc-js gives the handler: object mode, plus its 'cancelled' event. */
function clientStream(): PassThrough {
  return new PassThrough({ objectMode: true });
}

/** The error `p` rejects with; fails the test if it resolves. */
async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => expect.fail(`expected a rejection, got ${JSON.stringify(v)}`),
    (err: unknown) => err,
  );
}

/** Lets stream and promise callbacks run (the event loop, not a timer: time is the fake clock's). */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('readMessages idle timeout', () => {
  it('fails the pending read when no message arrives for the idle timeout', async () => {
    const clock = new ManualClock();
    const messages = readMessages(clientStream(), new AbortController().signal, IDLE_MS, clock, (m: string) => m);
    const read = messages.next();
    clock.advance(IDLE_MS - 1);
    await tick();
    clock.advance(1);
    const err = await rejectionOf(read);
    expect(err).toBeInstanceOf(CoordinatorError);
    expect(err).toMatchObject({ code: 'UPLOAD_INTERRUPTED', message: 'no data for 60 s' });
    expect(await rejectionOf(messages.next())).toBe(err); // and every later read
    messages.dispose();
  });

  it('restarts the timeout on each message and on touch()', async () => {
    const clock = new ManualClock();
    const stream = clientStream();
    const messages = readMessages(stream, new AbortController().signal, IDLE_MS, clock, (m: string) => m);
    clock.advance(IDLE_MS - 1);
    stream.write('chunk-1');
    await expect(messages.next()).resolves.toEqual({ done: false, value: 'chunk-1' });
    clock.advance(IDLE_MS - 1);
    messages.touch(); // the handler itself holds the client up (queued for the budget)
    clock.advance(IDLE_MS - 1);
    stream.write('chunk-2');
    await expect(messages.next()).resolves.toEqual({ done: false, value: 'chunk-2' });
    expect(clock.pending).toBe(1);
    messages.dispose();
    expect(clock.pending).toBe(0);
  });

  it('fails with the signal’s reason when aborted, and leaves no timer once disposed', async () => {
    const clock = new ManualClock();
    const abort = new AbortController();
    const messages = readMessages(clientStream(), abort.signal, IDLE_MS, clock, (m: string) => m);
    const read = messages.next();
    const reason = new CoordinatorError('UPLOAD_INTERRUPTED', 'superseded by a newer stream for the same stripe');
    abort.abort(reason);
    expect(await rejectionOf(read)).toBe(reason);
    messages.dispose();
    expect(clock.pending).toBe(0);
  });
});
