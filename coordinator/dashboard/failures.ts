/**
 * Each site's recent failures for the dashboard's sites page: every `site.dropped` event, with the
 * fedhpc error code its reason starts with (`UPLOAD_INTERRUPTED: …`, a site's own `TRAINING_FAILED: …`),
 * or none (`disconnected`). Bounded; in memory since this coordinator started (the journal keeps
 * the rounds' dropped lists, and `fedhpc admin logs SITE` the same lines).
 */
import type { EventBus } from '../observe/events.js';

/** Failures kept per site. */
export const FAILURES_PER_SITE = 20;

/** One failure of one site. */
export interface SiteFailure {
  readonly ts: number;
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  /** The error code the reason names; '' when it names none. */
  readonly code: string;
  readonly message: string;
}

const CODED = /^([A-Z][A-Z0-9_]{2,63}): ([\s\S]*)$/;

/** Splits a drop reason into its code and message. */
export function failureOf(reason: string): { readonly code: string; readonly message: string } {
  const m = CODED.exec(reason);
  return m ? { code: m[1]!, message: m[2]! } : { code: '', message: reason };
}

/** Failures per site, newest last, and a count of all seen. */
export class FailureBook {
  private readonly bySite = new Map<string, { total: number; recent: SiteFailure[] }>();

  constructor(bus: EventBus) {
    bus.subscribe((e) => {
      if (e.kind !== 'site.dropped') return;
      const b = e.body as { runId: string; round: number; attempt: number; site: string; reason: string };
      let entry = this.bySite.get(b.site);
      if (!entry) this.bySite.set(b.site, (entry = { total: 0, recent: [] }));
      entry.total += 1;
      entry.recent.push({ ts: e.ts, runId: b.runId, round: b.round, attempt: b.attempt, ...failureOf(b.reason) });
      if (entry.recent.length > FAILURES_PER_SITE) entry.recent.splice(0, entry.recent.length - FAILURES_PER_SITE);
    });
  }

  /** `site`'s failures: how many since start, and the newest few. */
  of(site: string): { readonly total: number; readonly recent: readonly SiteFailure[] } {
    const e = this.bySite.get(site);
    return { total: e?.total ?? 0, recent: e ? [...e.recent] : [] };
  }
}
