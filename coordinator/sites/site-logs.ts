/**
 * What the coordinator saw of each site, for `fedhpc admin logs SITE`: joins and leaves, activity
 * changes reported by heartbeats, uploads, drops and reported failures, approvals and revocations.
 * Bounded: the newest {@link SITE_LOG_LINES} lines per site, in memory only (the journal and the
 * site's own logs are the durable record).
 */
import type { BusEvent, EventBus } from '../observe/events.js';

/** Lines kept per site. */
export const SITE_LOG_LINES = 200;

/** One line of a site's log. */
export interface SiteLogLine {
  readonly ts: number;
  readonly kind: string;
  readonly message: string;
}

/** Per-site ring buffers fed by the event bus and by heartbeats. */
export class SiteLogBook {
  private readonly lines = new Map<string, SiteLogLine[]>();
  private readonly activity = new Map<string, string>();

  constructor(
    bus: EventBus,
    private readonly now: () => number,
  ) {
    bus.subscribe((e) => this.onEvent(e));
  }

  /** Adds a line for `site`, dropping the oldest beyond the bound. */
  add(site: string, kind: string, message: string, ts = this.now()): void {
    let ring = this.lines.get(site);
    if (!ring) this.lines.set(site, (ring = []));
    ring.push({ ts, kind, message });
    if (ring.length > SITE_LOG_LINES) ring.splice(0, ring.length - SITE_LOG_LINES);
  }

  /** A heartbeat: logged only when the reported activity changes. */
  heartbeat(site: string, activity: string, progress: number): void {
    if (this.activity.get(site) === activity) return;
    this.activity.set(site, activity);
    this.add(site, 'activity', progress >= 0 ? `${activity} (${(progress * 100).toFixed(0)}%)` : activity);
  }

  /** The newest `limit` lines of `site` (all kept when 0), oldest first. */
  recent(site: string, limit = 0): readonly SiteLogLine[] {
    const ring = this.lines.get(site) ?? [];
    return limit > 0 ? ring.slice(-limit) : [...ring];
  }

  has(site: string): boolean {
    return this.lines.has(site);
  }

  private onEvent(e: BusEvent): void {
    const b = e.body as Record<string, unknown>;
    const site = typeof b['site'] === 'string' ? b['site'] : undefined;
    if (!site) return;
    const at = typeof b['round'] === 'number' ? ` in round ${String(b['round'])}.${String(b['attempt'])}` : '';
    const text: Record<string, () => string> = {
      'site.joined': () => `joined (agent ${String(b['agentVersion'])}, certificate ${String(b['fingerprint']).slice(0, 23)}…)`,
      'site.left': () => 'left (task stream closed)',
      'site.approved': () => `certificate approved by ${String(b['admin'])}`,
      'site.revoked': () => `revoked by ${String(b['admin'])}: ${String(b['reason'])}`,
      'upload.done': () => `uploaded ${String(b['bytes'])} bytes${at}`,
      'site.dropped': () => `dropped${at}: ${String(b['reason'])}`,
    };
    const line = text[e.kind];
    if (line) this.add(site, e.kind.replace(/^site\./, '').replace(/^upload\.done$/, 'upload'), line(), e.ts);
  }
}
