/**
 * V8 settings for fedhpc processes that move large buffers.
 *
 * **ArrayBuffers swept at once** ({@link tuneGarbageCollector}): freed by a scavenge, they are swept
 * on the main thread instead of by a background task. Every fresh buffer (an AES-CTR keystream
 * slice where node:crypto makes it, a received message, a chunk) is external memory to V8, and a
 * scavenge set off by external memory pressure that leaves the freed buffers to the concurrent
 * sweeper still sees the pressure when it ends, so V8 starts a full mark-compact as well. On two
 * busy cores the sweeper runs late, and a site agent fell into that loop: 37–51 mark-compacts for
 * one 100 M-parameter secure upload, 15 for a plain one. Swept at once, with chunk buffers recycled
 * (proto/upload-codec.ts), the same uploads made 2–21 and 2–3, and the agents' CPU fell by about a
 * third (bench/RESULTS.md, issue 18, session 10). V8 reads the setting at each sweep, so setting it
 * as the process starts is enough (`v8.setFlagsFromString`: Node 20 does not freeze flags).
 *
 * **A floor under the old generation's limit** ({@link NODE_HEAP_OPTIONS}): Node 20's V8 (11.3)
 * counts external memory allocated since the last mark-compact against the old generation's
 * allocation limit, and sets that limit at about 1.4–1.5× the live heap. A coordinator's heap is
 * ~20 MB, so once ~10 MB of buffers are in flight above their level at the last mark-compact — TLS
 * records, DATA frames and chunks of a few uploads — V8 starts the next incremental marking, which
 * marks a heap with nothing to free: 243 mark-compacts for one 400 M-parameter plain round, up
 * to 130 in the transport benchmark's eight-stream receiver for 4 GiB (58 ms of background
 * marking in the one read; bench/RESULTS.md, issue 18, session 23). `--initial-old-space-size` is
 * the embedder's floor under that limit: below it, V8 starts no full collection for the old
 * generation's sake (external memory pressure still starts them). Garbage in external memory is
 * still bounded by V8's separate external-memory limit (64 MB above its level at the last
 * mark-compact), so what the floor costs is heap garbage, which these processes make little of. It
 * must be given on Node's command line (NODE_OPTIONS refuses it, and V8 sizes the heap before any
 * code runs): `bin/fedhpc`, the images' entry points and fedhpc's own launchers pass it.
 */
import { setFlagsFromString } from 'node:v8';

/** Sweeps this process's freed ArrayBuffers at once from now on (idempotent). */
export function tuneGarbageCollector(): void {
  setFlagsFromString('--no-concurrent-array-buffer-sweeping');
}

/** MB under which V8 collects the old generation only when it must; `bin/fedhpc` spells the same value. */
export const INITIAL_OLD_SPACE_MB = 256;

/** Node command-line options every fedhpc process starts with, before its script. */
export const NODE_HEAP_OPTIONS: readonly string[] = Object.freeze([`--initial-old-space-size=${INITIAL_OLD_SPACE_MB}`]);

/**
 * Whether this process (its `execArgv`) was started with an old-generation floor of at least
 * {@link INITIAL_OLD_SPACE_MB}: fedhpc's option, or an operator's larger one, as `--flag=N` or
 * `--flag N` (V8 reads `_` and `-` alike; the last one given counts).
 */
export function startedWithHeapOptions(execArgv: readonly string[] = process.execArgv): boolean {
  let mb: number | undefined;
  execArgv.forEach((arg, i) => {
    const m = /^--initial[-_]old[-_]space[-_]size(?:=(.*))?$/.exec(arg);
    if (m) mb = Number(m[1] ?? execArgv[i + 1]);
  });
  return mb !== undefined && mb >= INITIAL_OLD_SPACE_MB;
}

/** What a long-running command logs when Node was started without {@link NODE_HEAP_OPTIONS} (as `node dist/cli/main.js` is). */
export function warnIfHeapUntuned(log: { warn(obj: object, msg: string): void }, execArgv: readonly string[] = process.execArgv): void {
  if (startedWithHeapOptions(execArgv)) return;
  log.warn(
    { phase: 'start', nodeOptions: NODE_HEAP_OPTIONS },
    `Node was started without ${NODE_HEAP_OPTIONS.join(' ')} (bin/fedhpc and the images add it): uploads will spend CPU on needless full garbage collections`,
  );
}
