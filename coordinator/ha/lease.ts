/**
 * The leader lease of a highly available coordinator pair (issue 19): one key in a replicated
 * JetStream key-value bucket whose entries expire after the lease's TTL (the bucket's max age).
 * Coordinators of one federation race to create the key; the one that did holds the lease and
 * renews it; the others stand by, polling for the key to lapse. The lease's term is the revision at
 * which its holder created the key: revisions only grow, so a later leader always has a higher term.
 * Standbys announce themselves in the same bucket (`standby.<name>`), for the leader's `admin status`.
 *
 * The lease is not the fence. On nats-server 2.9 the revision check of create/update runs on the
 * stream leader outside Raft, so two coordinators can both believe they created the key; the
 * journal's chain rule (coordinator/state/jetstream-journal.ts) decides which of them commits, and
 * the other, fenced, stands down. What the lease guarantees is the other direction: a holder that
 * cannot renew stops serving once its last acknowledged renewal is older than the TTL minus a
 * margin — it may be cut off from NATS and see nothing — so by the time a standby can take the
 * key, the old holder has stopped.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import type { Logger } from '../../common/logger.js';

export interface LeaseOptions {
  readonly federation: string;
  /** This coordinator's name (unique in the federation). */
  readonly holder: string;
  /** Where sites and admins reach this coordinator (host:port): named to them by standbys. */
  readonly address: string;
  /** How long a lease lives without renewal (the bucket's max age). */
  readonly ttlMs: number;
  /** How often the holder renews. */
  readonly renewMs: number;
  /** A holder stops serving once its last acknowledged renewal is older than `ttlMs − marginMs`. */
  readonly marginMs: number;
  /** Replicas of the bucket's stream: 3 on a NATS cluster, 1 on a single server (tests). */
  readonly replicas: number;
  readonly logger?: Logger | undefined;
  readonly now?: (() => number) | undefined;
}

/**
 * Documented defaults (docs/operators.md): a failover within about TTL + renew interval. Not
 * shorter: when a NATS node dies, nats-server 2.9 re-elects the JetStream meta leader and the
 * bucket's stream leader by Raft (election timeouts of 4–9 s each), and the key-value API answers
 * "jetstream is not enabled" meanwhile — seen stalling renewals for more than 8 s here. A holder
 * must ride that out (16 s of grace) instead of handing leadership over on every NATS node loss.
 */
export const LEASE_DEFAULTS = { ttlMs: 20_000, renewMs: 2_000, marginMs: 4_000, replicas: 3 } as const;

/** Who holds the lease, as its key says. */
export interface LeaseHolder {
  readonly holder: string;
  readonly address: string;
  /** The revision at which the holder created the key. */
  readonly term: number;
  /** When the holder last renewed (its clock), ms since the epoch. */
  readonly renewedMs: number;
}

const KEY = 'leader';
/** Standbys announce themselves under `standby.<name>` in the same bucket (they expire with its TTL). */
const STANDBY_PREFIX = 'standby.';

/** A standby's announcement in the lease bucket, put again every renew interval while it stands by. */
export interface StandbyAnnouncement {
  readonly name: string;
  readonly address: string;
  /** When the standby last announced itself (its clock), ms since the epoch. */
  readonly seenMs: number;
}

/** Reads an announcement's JSON, or undefined when it is not one (a foreign or garbled value). */
export function parseStandbyAnnouncement(text: string): StandbyAnnouncement | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const { name, address, seenMs } = v as Record<string, unknown>;
  return typeof name === 'string' && typeof address === 'string' && typeof seenMs === 'number' && Number.isFinite(seenMs) ? { name, address, seenMs } : undefined;
}

/** The bucket of a federation's lease (KV names allow letters, digits, `_` and `-`). */
export function leaseBucket(federation: string): string {
  return `FEDHPC_LEASE_${federation.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

/** One coordinator's side of the lease: stand by until it can take it, then hold it. */
export class LeaderLease {
  private revision = 0;
  private term = 0;
  private lastAckMs = 0;
  private renewer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private renewing = false;
  private closed = false;
  private readonly now: () => number;
  private resolveLost!: (why: string) => void;
  /** Resolves with why once a held lease is lost (not renewed in time, or another holder seen). */
  readonly lost: Promise<string> = new Promise((r) => (this.resolveLost = r));

  private constructor(
    private readonly kv: KV,
    private readonly o: LeaseOptions,
  ) {
    this.now = o.now ?? Date.now;
  }

  /** Opens (creating if missing) the federation's lease bucket. */
  static async open(nc: NatsConnection, o: LeaseOptions): Promise<LeaderLease> {
    if (!(o.marginMs > 0 && o.marginMs < o.ttlMs && o.renewMs > 0 && o.renewMs < o.ttlMs - o.marginMs)) {
      throw new RangeError(`lease timing: need 0 < renew (${o.renewMs}) < ttl − margin (${o.ttlMs} − ${o.marginMs}) and 0 < margin < ttl`);
    }
    // Reads go to the bucket's stream leader, not (`allow_direct`) to any replica: a follower may not
    // have the latest write yet. Seen on a 3-node cluster: a new holder read its own fresh key back as
    // lapsed; a stale read in `release` would skip the delete and leave the standby a TTL to wait.
    const kv = await new Kvm(nc).create(leaseBucket(o.federation), { history: 1, ttl: o.ttlMs, replicas: o.replicas, allow_direct: false });
    return new LeaderLease(kv, o);
  }

  /** The lease's holder now, or undefined when the key has lapsed (or was released). */
  async current(): Promise<LeaseHolder | undefined> {
    const e = await this.kv.get(KEY);
    if (!e || e.operation !== 'PUT' || e.length === 0) return undefined;
    let held: LeaseHolder;
    try {
      held = e.json<LeaseHolder>();
    } catch {
      return undefined;
    }
    // The key is created before its term is known (the term is the creation's revision) and written
    // with it right after; until that write lands, the entry is still the creation itself.
    return held.term === 0 ? { ...held, term: e.revision } : held;
  }

  /**
   * Announces this coordinator as a standby (`standby.<holder>`, its address and now): the leader
   * lists it for `admin status`; it lapses with the bucket's TTL unless announced again.
   */
  async announceStandby(): Promise<void> {
    const value: StandbyAnnouncement = { name: this.o.holder, address: this.o.address, seenMs: this.now() };
    await this.kv.put(`${STANDBY_PREFIX}${this.o.holder}`, new TextEncoder().encode(JSON.stringify(value)));
  }

  /** Withdraws this coordinator's standby announcement (it leads now, or stops). */
  async withdrawStandby(): Promise<void> {
    await this.kv.delete(`${STANDBY_PREFIX}${this.o.holder}`);
  }

  /** The standbys announced in the bucket and not lapsed, this coordinator excluded, by name. */
  async standbys(): Promise<StandbyAnnouncement[]> {
    const keys: string[] = [];
    for await (const k of await this.kv.keys(`${STANDBY_PREFIX}>`)) keys.push(k);
    const found: StandbyAnnouncement[] = [];
    for (const k of keys.sort()) {
      const e = await this.kv.get(k);
      const a = e && e.operation === 'PUT' && e.length > 0 ? parseStandbyAnnouncement(e.string()) : undefined;
      if (a && a.name !== this.o.holder) found.push(a);
    }
    return found;
  }

  /** Whether this coordinator holds the lease and may serve: its last renewal is recent enough. */
  held(): boolean {
    return this.term > 0 && this.now() - this.lastAckMs < this.o.ttlMs - this.o.marginMs;
  }

  /** When the last acknowledged renewal was sent (ms since the epoch; 0 before the first). */
  get lastRenewalMs(): number {
    return this.lastAckMs;
  }

  /** This coordinator's term while it holds the lease (0 before). */
  get heldTerm(): number {
    return this.term;
  }

  /**
   * Stands by until the lease is free, takes it and starts renewing; resolves with the term. Polls
   * every renew interval: a lapsed key leaves no delete marker to watch for.
   */
  async acquire(signal: AbortSignal): Promise<number> {
    let unreachable = false;
    for (;;) {
      signal.throwIfAborted();
      // NATS without quorum (or out of reach) answers nothing: a standby waits it out, it does not give up.
      const free = await this.current().then(
        (held) => held === undefined,
        (err: unknown) => {
          if (!unreachable) this.o.logger?.warn({ phase: 'lease', err: { message: (err as Error).message } }, 'cannot read the leader lease: standing by until NATS answers');
          unreachable = true;
          return false;
        },
      );
      if (free) unreachable = false;
      if (free) {
        const sent = this.now();
        const value = (term: number): Uint8Array => new TextEncoder().encode(JSON.stringify({ holder: this.o.holder, address: this.o.address, term, renewedMs: this.now() } satisfies LeaseHolder));
        const created = await this.kv.create(KEY, value(0)).catch(() => undefined);
        if (created !== undefined) {
          // The term names the holder's own creation; written into the value with the first renewal.
          this.term = created;
          this.acked(sent);
          this.revision = await this.kv.update(KEY, value(created), created).catch(() => created);
          this.o.logger?.info({ phase: 'lease', term: created, holder: this.o.holder }, 'took the leader lease');
          this.renewer = setInterval(() => void this.renew(), this.o.renewMs);
          return created;
        }
      }
      // One listener per wait, removed with it: a standby polls for hours.
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          resolve();
        };
        const t = setTimeout(done, this.o.renewMs);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /**
   * A renewal sent at `sentMs` was acknowledged: the lease is held until `ttl − margin` after it,
   * and a watchdog ends it then unless another acknowledgement comes first — even when the
   * renewals hang (a holder cut off from NATS hears nothing at all).
   */
  private acked(sentMs: number): void {
    this.lastAckMs = sentMs;
    this.armWatchdog();
  }

  private armWatchdog(): void {
    if (this.watchdog !== undefined) clearTimeout(this.watchdog);
    const left = this.o.ttlMs - this.o.marginMs - (this.now() - this.lastAckMs);
    // A timer may fire a millisecond early by the wall clock: then it is armed again for the rest.
    if (left > 0) this.watchdog = setTimeout(() => this.armWatchdog(), left);
    else this.lose(`the lease was not renewed for ${this.now() - this.lastAckMs} ms (TTL ${this.o.ttlMs} ms, margin ${this.o.marginMs} ms)`);
  }

  private async renew(): Promise<void> {
    if (this.closed || this.term === 0 || this.renewing) return;
    this.renewing = true;
    try {
      await this.renewOnce();
    } finally {
      this.renewing = false;
    }
  }

  private async renewOnce(): Promise<void> {
    const sent = this.now();
    const value = new TextEncoder().encode(JSON.stringify({ holder: this.o.holder, address: this.o.address, term: this.term, renewedMs: sent } satisfies LeaseHolder));
    try {
      this.revision = await this.kv.update(KEY, value, this.revision, this.o.renewMs);
      // Counted from when the renewal was sent: the key's new age started no earlier.
      if (this.term !== 0) this.acked(sent);
    } catch (err) {
      const other = await this.current().catch(() => undefined);
      if (other !== undefined && other.term !== 0 && other.term !== this.term) return this.lose(`another coordinator (${other.holder}, term ${other.term}) holds the lease`);
      this.o.logger?.warn({ phase: 'lease', term: this.term, err: { message: (err as Error).message } }, 'could not renew the leader lease');
    }
  }

  private lose(why: string): void {
    if (this.term === 0) return;
    this.o.logger?.error({ phase: 'lease', term: this.term, why }, 'lost the leader lease: stop serving');
    this.stopRenewing();
    this.term = 0;
    this.resolveLost(why);
  }

  private stopRenewing(): void {
    if (this.renewer !== undefined) clearInterval(this.renewer);
    if (this.watchdog !== undefined) clearTimeout(this.watchdog);
    this.renewer = undefined;
    this.watchdog = undefined;
  }

  /** Hands the lease over now (a clean shutdown): stops renewing and deletes the key if still ours. */
  async release(): Promise<void> {
    this.stopRenewing();
    const mine = this.term;
    this.term = 0;
    if (mine === 0) return;
    const held = await this.current().catch(() => undefined);
    if (held?.term === mine) await this.kv.delete(KEY, { previousSeq: this.revision }).catch(() => undefined);
    this.resolveLost('released');
  }

  /** Stops renewing (the key lapses after its TTL). */
  close(): void {
    this.closed = true;
    this.stopRenewing();
  }
}
