/**
 * The leader's side of `admin status` for a standby pair (issue 19): keeps a {@link HaView}
 * current by reading, every few seconds rather than per call, the standbys announced in the lease
 * bucket and the journal stream's Raft group. A read that fails keeps the last good answer and
 * says why; every read has a deadline, so a NATS outage never holds `status` up.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { journalStreamName } from '../state/journal-stream.js';
import type { LeaderLease, StandbyAnnouncement } from './lease.js';
import { standbysSeen, streamHealth, type HaSnapshot, type HaView } from './view.js';

export interface HaMonitorOptions {
  readonly nc: NatsConnection;
  readonly lease: Pick<LeaderLease, 'standbys' | 'lastRenewalMs'>;
  readonly federation: string;
  readonly name: string;
  readonly address: string;
  readonly term: number;
  readonly ttlMs: number;
  /** How often NATS is read. */
  readonly refreshMs: number;
  /** Deadline of one read. */
  readonly timeoutMs: number;
  readonly now?: () => number;
}

/** A running monitor: its view, and `stop()`. */
export interface HaMonitor {
  readonly view: HaView;
  stop(): void;
}

/** Starts reading at once and every `refreshMs`; the view answers from the last read. */
export function startHaMonitor(o: HaMonitorOptions): HaMonitor {
  const now = o.now ?? Date.now;
  let announced: readonly StandbyAnnouncement[] = [];
  let stream: ReturnType<typeof streamHealth> = { journalLeader: '', peersCurrent: 0, peersTotal: 0 };
  let checkedMs = now();
  let error = 'not read yet';
  let reading = false;
  const deadline = <T>(p: Promise<T>): Promise<T> =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer from NATS within ${o.timeoutMs} ms`)), o.timeoutMs).unref())]);
  const read = async (): Promise<void> => {
    if (reading) return;
    reading = true;
    try {
      const jsm = await deadline(jetstreamManager(o.nc, { timeout: o.timeoutMs, checkAPI: false }));
      const [standbys, info] = await Promise.all([deadline(o.lease.standbys()), deadline(jsm.streams.info(journalStreamName(o.federation)))]);
      announced = standbys;
      stream = streamHealth(info.cluster);
      error = '';
    } catch (err) {
      error = (err as Error).message;
    } finally {
      checkedMs = now();
      reading = false;
    }
  };
  void read();
  const timer = setInterval(() => void read(), o.refreshMs);
  const view: HaView = {
    snapshot(): HaSnapshot {
      const t = now();
      return {
        role: 'leader',
        name: o.name,
        term: o.term,
        address: o.address,
        leaseAgeMs: Math.max(0, t - o.lease.lastRenewalMs),
        leaseTtlMs: o.ttlMs,
        standbys: standbysSeen(announced, o.name, t),
        nats: { connectedServer: o.nc.info?.server_name ?? '', ...stream, checkedMsAgo: Math.max(0, t - checkedMs), error },
      };
    },
  };
  return { view, stop: () => clearInterval(timer) };
}
