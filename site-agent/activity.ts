/**
 * What this site is doing right now, as its heartbeats tell the coordinator: written by the round
 * job as it goes, read by the connection loop every heartbeat and before it reconnects for a
 * renewed certificate (only when idle).
 */
import type { HeartbeatReport } from './link.js';
import type { TransferMeter } from './progress.js';

/** The phases a heartbeat names. */
export type ActivityName = 'idle' | 'download' | 'training' | 'upload';

/** The site's current activity and its progress. */
export class SiteActivity {
  activity: ActivityName = 'idle';
  /** The round of the latest train task (kept after it ends, as heartbeats always carried it). */
  round = 0;
  /** Progress of the current phase in [0, 1]; -1 when unknown. */
  progress = -1;
  trainLoss = 0;
  /** The transfer in progress, if any. */
  meter: TransferMeter | undefined;

  /** The figures of the next heartbeat. */
  report(): HeartbeatReport {
    return { activity: this.activity, round: this.round, progress: this.progress, trainLoss: this.trainLoss, transfer: this.meter?.snapshot() };
  }
}
