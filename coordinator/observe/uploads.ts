/**
 * The open attempt's uploads as the coordinator receives them, per site, from the event bus
 * (`upload.progress`, `upload.done`; cleared when the next attempt opens). One reader of these
 * events for the Prometheus run view (run-metrics.ts) and the dashboard's transfers page.
 */
import type { EventBus } from './events.js';

/** One site's upload of the open attempt. */
export interface UploadReceived {
  readonly site: string;
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  /** Bytes received so far. */
  readonly bytes: number;
  /** The upload's size as its header declared (its received bytes once done). */
  readonly totalBytes: number;
  readonly done: boolean;
  readonly updatedMs: number;
}

/** Follows the bus; {@link list} reads the open attempt's uploads. */
export class OpenAttemptUploads {
  private readonly uploads = new Map<string, UploadReceived>();

  constructor(bus: EventBus) {
    bus.subscribe((e) => {
      if (e.kind === 'round.opened') {
        this.uploads.clear();
      } else if (e.kind === 'upload.progress' || e.kind === 'upload.done') {
        const b = e.body as { runId: string; round: number; attempt: number; site: string; bytes: number; totalBytes?: number };
        const done = e.kind === 'upload.done';
        this.uploads.set(b.site, { site: b.site, runId: b.runId, round: b.round, attempt: b.attempt, bytes: b.bytes, totalBytes: done ? b.bytes : (b.totalBytes ?? 0), done, updatedMs: e.ts });
      }
    });
  }

  /** Every upload of the open attempt, by site. */
  list(): UploadReceived[] {
    return [...this.uploads.values()].sort((a, b) => a.site.localeCompare(b.site));
  }
}
