/**
 * What `admin status` shows of a standby pair's leader (issue 19): its leadership, the standbys it
 * sees and the NATS cluster's health as it sees it. The leader's shell (coordinator/ha/run.ts)
 * keeps a {@link HaView} current and hands it to the coordinator; the admin service only reads it.
 * The functions here are pure: they turn what NATS answered into that view.
 */
import type { StandbyAnnouncement } from './lease.js';

/** A standby as the leader last saw its announcement. */
export interface HaStandbySeen {
  readonly name: string;
  readonly address: string;
  /** Milliseconds since its announcement (the leader's clock minus the standby's stamp; never negative). */
  readonly lastSeenMsAgo: number;
}

/** The NATS cluster as the leader sees it (read every few seconds, not per `status`). */
export interface NatsClusterHealth {
  /** The NATS server this coordinator (last) connected to; "" before the first connection. */
  readonly connectedServer: string;
  /** The Raft leader of the journal stream; "" while it has none (or none was read yet). */
  readonly journalLeader: string;
  /** The journal stream's peers, its leader included, that are current, and all of them. */
  readonly peersCurrent: number;
  readonly peersTotal: number;
  /** Milliseconds since the health was read. */
  readonly checkedMsAgo: number;
  /** Why the last read failed; "" when it succeeded. */
  readonly error: string;
}

/** The leader's view of its pair, as `Status` carries it. */
export interface HaSnapshot {
  readonly role: 'leader';
  readonly name: string;
  readonly term: number;
  readonly address: string;
  /** Milliseconds since the lease's last acknowledged renewal; the lease's TTL. */
  readonly leaseAgeMs: number;
  readonly leaseTtlMs: number;
  readonly standbys: readonly HaStandbySeen[];
  readonly nats: NatsClusterHealth;
}

/** What a standby pair's leader passes to its coordinator: read at each `Status`, cheap. */
export interface HaView {
  snapshot(): HaSnapshot;
}

/** The part of a JetStream stream's info that says how its Raft group fares. */
export interface StreamClusterInfo {
  readonly leader?: string | undefined;
  readonly replicas?: readonly { readonly name: string; readonly current: boolean; readonly offline?: boolean }[] | undefined;
}

/**
 * The journal stream's Raft group as health: its leader and how many peers are current. The
 * leader is current by definition and is not among `replicas` (JetStream lists the followers); a
 * stream with no leader has no peer counted current.
 */
export function streamHealth(cluster: StreamClusterInfo | undefined): Pick<NatsClusterHealth, 'journalLeader' | 'peersCurrent' | 'peersTotal'> {
  const leader = cluster?.leader ?? '';
  const followers = cluster?.replicas ?? [];
  const current = followers.filter((r) => r.current && r.offline !== true).length;
  return { journalLeader: leader, peersCurrent: leader ? current + 1 : 0, peersTotal: followers.length + (leader ? 1 : 0) };
}

/** The standbys to show: every announcement but `self`'s, with its age at `nowMs`, by name. */
export function standbysSeen(announced: readonly StandbyAnnouncement[], self: string, nowMs: number): HaStandbySeen[] {
  return announced
    .filter((a) => a.name !== self)
    .map((a) => ({ name: a.name, address: a.address, lastSeenMsAgo: Math.max(0, nowMs - a.seenMs) }))
    .sort((x, y) => x.name.localeCompare(y.name));
}
