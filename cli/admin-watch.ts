/**
 * `fedhpc admin watch`: live round progress from the `Events` stream plus a status poll, redrawn
 * in the terminal (or one JSON object per line with `--json`); ends when the run ends. What the
 * coordinator sends is printed as data (common/text.ts): no event or site field reaches the
 * terminal as a control. Across a standby pair's failover it follows the new leader: calls that
 * find no coordinator answering are retried (said once, `{"type":"unavailable"}` with `--json`)
 * for up to {@link UNANSWERED_MS}, and the event stream is opened again at whoever leads, whose
 * first event is its `leader.elected`.
 */
import { sleep } from '../common/backoff.js';
import { followEvents, noLeaderAnswered, type AdminClient, type AdminEvent } from '../coordinator/index.js';
import { printable, safeJson } from '../common/text.js';
import { formatBytes, formatTable, formatTime } from './table.js';

/** Run states after which there is nothing left to watch. */
const ENDED = new Set(['finished', 'failed', 'aborted', 'idle']);
const POLL_MS = 1_000;
/** How long the watch waits for any coordinator to answer (a failover takes a lease's TTL) before it gives up. */
const UNANSWERED_MS = 5 * 60_000;


/** Follows the coordinator until the run ends or `signal` aborts; returns the exit code. */
export async function watchCommand(client: AdminClient, json: boolean, out: (s: string) => void, signal?: AbortSignal): Promise<number> {
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const recent: string[] = [];
  const onEvent = (e: AdminEvent): void => {
    if (json) out(safeJson({ type: 'event', kind: e.kind, ts: e.ts, body: e.body }));
    else {
      recent.push(printable(`${formatTime(e.ts)} ${e.kind} ${summary(e.body)}`));
      if (recent.length > 8) recent.shift();
    }
  };
  // A stream the leader's death ended is opened again at whoever leads (the status poll says when none does).
  const events = followEvents(client, onEvent, () => pause(POLL_MS, stop.signal), stop.signal).catch((err: unknown) => {
    if (!stop.signal.aborted) throw err;
  });
  let silentSince: number | undefined;
  try {
    for (;;) {
      let answer: [Status, { sites: Site[] }];
      try {
        answer = await Promise.all([client.status(), client.sites()]);
        silentSince = undefined;
      } catch (err) {
        if (!noLeaderAnswered(err)) throw err;
        const now = Date.now();
        if (silentSince === undefined) {
          silentSince = now;
          const why = `no coordinator answers (${(err as Error).message}); retrying — a standby takes over once the leader's lease lapses`;
          out(json ? safeJson({ type: 'unavailable', reason: why }) : printable(why));
        } else if (now - silentSince > UNANSWERED_MS) throw err;
        await pause(POLL_MS, stop.signal);
        if (stop.signal.aborted) return 0;
        continue;
      }
      const [status, { sites }] = answer;
      if (json) out(safeJson({ type: 'status', status, sites }));
      else out(screen(status, sites, recent));
      if (ENDED.has(status.runState)) return status.runState === 'finished' ? 0 : status.runState === 'idle' ? 0 : 1;
      await pause(POLL_MS, stop.signal);
      if (stop.signal.aborted) return 0;
    }
  } finally {
    stop.abort();
    signal?.removeEventListener('abort', onAbort);
    await events;
  }
}

/** Waits `ms`, or less if `signal` aborts (resolving: the caller looks at the signal). */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, signal).catch(() => undefined);
}

function summary(body: Record<string, unknown>): string {
  return Object.entries(body)
    .filter(([k]) => k !== 'runId')
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' ')
    .slice(0, 160);
}

type Status = Awaited<ReturnType<AdminClient['status']>>;
type Site = Awaited<ReturnType<AdminClient['sites']>>['sites'][number];

function screen(s: Status, sites: readonly Site[], recent: readonly string[]): string {
  const deadline = Number(s.phaseDeadlineMs);
  const left = deadline > 0 ? `${Math.max(0, Math.round((deadline - Date.now()) / 1000))} s left` : '';
  const applied = s.maxAppliedStalenessSteps > 0 || s.appliedStalenessLimit > 0 ? ` · applied staleness max ${s.maxAppliedStalenessSteps}${s.appliedStalenessLimit > 0 ? `/${s.appliedStalenessLimit}` : ''} steps` : '';
  const head = printable(`${s.federation} · run ${s.runId || '-'} (${s.runState}) · round ${s.phase ? `${s.round}.${s.attempt} ${s.phase} ${left}` : '-'} · ${s.roundsCommitted}/${s.roundsTotal} committed${applied}`);
  const table = formatTable(
    ['site', 'state', 'activity', 'progress', 'transfer', 'last round', 'stale', 'applied', 'busy'],
    sites.map((x) => [
      x.siteId,
      x.revoked ? 'revoked' : x.connected ? 'connected' : 'away',
      x.activity,
      x.progress >= 0 ? `${(x.progress * 100).toFixed(0)}%` : '-',
      x.transferDirection ? `${x.transferDirection} ${formatBytes(Number(x.transferBytes))}/${formatBytes(Number(x.transferTotal))} ${formatBytes(x.transferRateBytesPerS)}/s` : '-',
      Number(x.lastRound) > 0 ? `r${x.lastRound}: ${x.lastTokens} tok, ${x.lastSteps} steps` : '-',
      Number(x.lastRound) > 0 ? String(x.lastStaleness) : '-',
      Number(x.lastRound) > 0 ? String(x.lastAppliedStaleness) : '-',
      x.busyFraction >= 0 ? `${(x.busyFraction * 100).toFixed(0)}%` : '-',
    ]),
  );
  // Everything above is printable (the table escapes its cells): the one control written is this
  // one, which clears the screen and homes the cursor, and only on a terminal; a pipe gets plain frames.
  const clear = process.stdout.isTTY ? '\x1b[2J\x1b[H' : '';
  return `${clear}${head}\n\n${table}\n\n${recent.join('\n')}`;
}
