/**
 * One coordinator of a standby pair (issue 19): it stands by — answering every call NOT_LEADER with
 * the leader's address and keeping no state of its own — until it holds the leader lease, then
 * writes a `leader` record under the lease's term to the replicated journal, replays the journal as
 * a restart does (an interrupted round resumes at a higher attempt) and serves. It serves only while
 * it holds the lease: once the lease is lost (not renewed within TTL − margin: cut off from NATS) or
 * the journal fences it (another writer extended the chain), it stops serving and returns, and its
 * process exits so that its supervisor (systemd, a container's restart policy) starts it again — as a
 * standby. Crash-only: there is no path from leader back to standby inside one process.
 *
 * While it stands by it announces itself in the lease bucket and checks its configured run against
 * the journal it follows (coordinator/ha/run-check.ts): a run that differs from the journal's ends it
 * with `RUN_CONFIG_MISMATCH` before any failover, and is checked once more at takeover, before the
 * `leader` record. While it leads it keeps a view of the pair (coordinator/ha/monitor.ts) for
 * `admin status`, and its first event is `leader.elected`.
 *
 * Checkpoints, optimizer state and spools stay in `stateDir`, which both coordinators of the pair
 * must reach (a shared filesystem: the HPC norm); only the journal moves to JetStream.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../common/logger.js';
import type { ResolvedCoordinatorConfig } from '../config.js';
import { startCoordinator, type CoordinatorHandle } from '../coordinator.js';
import { CoordinatorError } from '../core/errors.js';
import { natsConnectOptions } from '../nats/options.js';
import { JetStreamJournal } from '../state/jetstream-journal.js';
import { journalStreamName, journalSubject } from '../state/journal-stream.js';
import { isRecordOf, type LeaderRecord } from '../state/records.js';
import { LocalStateStore } from '../state/store.js';
import { checkConfiguredRun } from '../shell/run-start.js';
import { LeaderLease, type LeaseOptions } from './lease.js';
import { startHaMonitor, type HaMonitor } from './monitor.js';
import { startRunCheck } from './run-check.js';
import { startStandbyServer } from './standby-server.js';

/** Why a pair's coordinator stopped serving. */
export type HaExit = { readonly kind: 'stopped' } | { readonly kind: 'lost'; readonly why: string };

export interface RunHaOptions {
  readonly config: ResolvedCoordinatorConfig;
  readonly logger: Logger;
  /** Aborted: stop (a clean shutdown hands the lease over at once). */
  readonly signal: AbortSignal;
  /** Called once this coordinator serves as the leader. */
  readonly onLeader?: (handle: CoordinatorHandle, term: number) => void;
}

/** Stands by, leads when it can, and resolves when it must stop serving (see the module comment). */
export async function runHaCoordinator(o: RunHaOptions): Promise<HaExit> {
  const { config, logger } = o;
  const ha = config.ha;
  if (!ha || !config.nats) throw new CoordinatorError('BAD_REQUEST', 'a standby pair needs both `ha` and `nats` in the coordinator config');
  const log = logger.child({ component: 'ha', holder: ha.name });
  const nc: NatsConnection = await connect({ ...natsConnectOptions(config.nats, `fedhpc-ha-${ha.name}`), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  const lease = await openLease(nc, { federation: config.federation, holder: ha.name, address: ha.advertise, ...ha.lease, replicas: ha.replicas, logger: log }, o.signal, log);
  if (lease === undefined) {
    await within(STOP_WAIT_MS, nc.close());
    return { kind: 'stopped' };
  }
  let leaderAddress: string | undefined;
  // A standby checks its configured run against the journal it follows (run-check.ts): one the
  // journal's run refuses stops standing by, before a failover would need it.
  const runCheck = startRunCheck({
    config,
    logger: log,
    openReader: () => JetStreamJournal.open({ nc, stream: journalStreamName(config.federation), subject: journalSubject(config.federation), replicas: ha.replicas }),
  });
  let refusal: { err: unknown } | undefined;
  const refused = new AbortController();
  void runCheck.refused.then((err) => {
    refusal = { err };
    refused.abort();
  });
  // A standby follows who leads (for its NOT_LEADER answers) and announces itself, so that the
  // leader's `admin status` lists it; the announcement lapses with the bucket's TTL.
  const refreshLeader = async (): Promise<void> => {
    runCheck.check();
    leaderAddress = (await lease.current().catch(() => undefined))?.address;
    await lease.announceStandby().catch((err: unknown) => log.warn({ err: { message: (err as Error).message } }, 'could not announce this standby in the lease bucket'));
  };
  await refreshLeader();
  const standby = await startStandbyServer({ config, leader: () => leaderAddress, logger: log });
  const watching = setInterval(() => void refreshLeader(), ha.lease.renewMs);
  log.info({ phase: 'standby', address: standby.address, leader: leaderAddress ?? null }, 'standing by: answering NOT_LEADER until this coordinator holds the lease');
  let handle: CoordinatorHandle | undefined;
  let monitor: HaMonitor | undefined;
  try {
    const standingBy = AbortSignal.any([o.signal, refused.signal]);
    const term = await lease.acquire(standingBy).catch((err: unknown) => {
      if (standingBy.aborted) return undefined;
      throw err;
    });
    clearInterval(watching);
    // Closed at once (no refusal after this), in the background: a takeover does not wait on the reader.
    void runCheck.close().catch(() => undefined);
    await standby.stop();
    await lease.withdrawStandby().catch(() => undefined);
    if (refusal) {
      // Refused while standing by; a lease taken in the same instant is handed over, nothing written under it.
      if (term !== undefined) await lease.release();
      throw refusal.err;
    }
    if (term === undefined) return { kind: 'stopped' };
    const journal = await JetStreamJournal.open({ nc, stream: journalStreamName(config.federation), subject: journalSubject(config.federation), replicas: ha.replicas, term, logger: log });
    try {
      // Again on the chain as of the takeover (the standby may not have read it yet), before the
      // `leader` record: a refused takeover leaves the journal as it was and the lease to the pair.
      checkConfiguredRun(journal.records(), config);
    } catch (err) {
      await journal.close();
      await lease.release();
      throw err;
    }
    const previousTerm = journal.records().reduce((t, r) => (isRecordOf(r.body, 'leader') ? r.body.term : t), 0);
    const leader: LeaderRecord = { type: 'leader', term, holder: ha.name, address: ha.advertise };
    await journal.append(leader);
    log.info({ phase: 'leader', term, records: journal.records().length }, 'leading: replaying the journal and serving');
    const store = await LocalStateStore.open(config.stateDir, Date.now, journal);
    monitor = startHaMonitor({ nc, lease, federation: config.federation, name: ha.name, address: ha.advertise, term, ttlMs: ha.lease.ttlMs, refreshMs: Math.max(ha.lease.renewMs, 2_000), timeoutMs: 2_000 });
    let fenced: (why: string) => void = () => undefined;
    const fence = new Promise<string>((resolve) => (fenced = resolve));
    handle = await startCoordinator({
      config,
      logger,
      store,
      // A refused append (fenced, or the journal unreachable past its deadline) ends this leadership.
      onFatal: (err) => fenced(`the journal refused an append: ${(err as Error).message}`),
      ha: monitor.view,
    });
    // Announced once this leader serves, so NATS subscribers (and admin event streams open by then) learn who leads.
    handle.bus.emit('leader.elected', { term, holder: ha.name, address: ha.advertise, previousTerm });
    o.onLeader?.(handle, term);
    const stopped = new Promise<'stopped'>((resolve) => o.signal.addEventListener('abort', () => resolve('stopped'), { once: true }));
    const why = await Promise.race([lease.lost, fence, stopped]);
    if (why === 'stopped') {
      await handle.stop();
      handle = undefined;
      await lease.release();
      return { kind: 'stopped' };
    }
    log.error({ phase: 'leader', term, why }, 'no longer the leader: stop serving');
    return { kind: 'lost', why };
  } finally {
    clearInterval(watching);
    await standby.stop();
    await within(STOP_WAIT_MS, runCheck.close());
    monitor?.stop();
    // A leader cut off from NATS would wait on the dead connection (an append in flight, a flush)
    // until missed pings close it, tens of seconds: it has stopped serving already, so it waits less.
    await within(STOP_WAIT_MS, handle?.stop());
    lease.close();
    await within(STOP_WAIT_MS, nc.close());
  }
}

/**
 * Opens the lease bucket, trying again every second while NATS cannot answer (a cluster without
 * quorum, still electing its leaders after a restart): a coordinator started meanwhile stands by
 * instead of exiting. Undefined when `signal` aborts first.
 */
async function openLease(nc: NatsConnection, options: LeaseOptions, signal: AbortSignal, log: Logger): Promise<LeaderLease | undefined> {
  for (let tries = 0; !signal.aborted; tries++) {
    try {
      return await LeaderLease.open(nc, options);
    } catch (err) {
      if (err instanceof RangeError) throw err; // the lease's timing in the config: no retry mends it
      if (tries === 0) log.warn({ phase: 'standby', err: { message: (err as Error).message } }, 'cannot open the lease bucket yet: trying again until NATS answers');
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, 1_000);
        function done(): void {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          resolve();
        }
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }
  return undefined;
}

/** How long stopping waits for the coordinator and for the NATS connection, each. */
const STOP_WAIT_MS = 5_000;

/** Waits for `p` (its failure ignored), at most `ms`. */
async function within(ms: number, p: Promise<unknown> | undefined): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p?.catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
