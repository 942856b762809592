/**
 * A V8 setting for fedhpc processes that move large buffers: ArrayBuffers freed by a scavenge are
 * swept on the main thread, at once, instead of by a background task.
 *
 * Why: every fresh buffer (an AES-CTR keystream slice — Node 20's `cipher.update` cannot write into
 * a caller's buffer — a received message, a chunk) is external memory to V8, and a scavenge set off
 * by external memory pressure that leaves the freed buffers to the concurrent sweeper still sees the
 * pressure when it ends, so V8 starts a full mark-compact as well. On two busy cores the sweeper
 * runs late, and a site agent fell into that loop: 37–51 mark-compacts for one 100 M-parameter
 * secure upload, 15 for a plain one, each a full marking of its heap. Swept at once, with chunk
 * buffers recycled (proto/upload-codec.ts), the same uploads made 2–21 and 2–3, and the agents'
 * CPU fell by about a third (bench/RESULTS.md, issue 18, session 10). The sweep itself is small:
 * a scavenge frees a few hundred buffers.
 *
 * V8 reads the setting at each sweep, so setting it as the process starts is enough
 * (`v8.setFlagsFromString`, which Node 20 allows: flags are not frozen after start-up).
 */
import { setFlagsFromString } from 'node:v8';

/** Sweeps this process's freed ArrayBuffers at once from now on (idempotent). */
export function tuneGarbageCollector(): void {
  setFlagsFromString('--no-concurrent-array-buffer-sweeping');
}
