/**
 * The admin side of `AdminService`, for the CLI and `simulate`: typed calls with deadlines, wire
 * messages converted to plain objects in one place. Given several coordinator addresses, it finds
 * the leader as a site does (docs/protocol.md, "Standby coordinators and NOT_LEADER").
 */
import * as grpc from '@grpc/grpc-js';
import { clientWindowOptions } from '../common/grpc-window.js';
import { mutualTlsCredentials } from '../common/grpc-tls.js';
import { readTlsFiles, type TlsFiles } from '../common/tls.js';
import { NOT_LEADER, droppedConnection, readGrpcRefusal } from '../common/coordinator-verdict.js';
import { invariant } from '../aggregation/index.js';
import {
  loadProto,
  type AdminServiceClient,
  type ApproveSiteResponse__Output,
  type RevokeSiteResponse__Output,
  type RoundDetail__Output,
  type RunControlResponse__Output,
  type SiteLogsResponse__Output,
  type UsageResponse__Output,
  type RoundsResponse__Output,
  type SitesResponse__Output,
  type StatusResponse__Output,
} from '../proto/index.js';

export interface AdminClientOptions {
  /** The coordinator's `host:port` (this, or `coordinators`). */
  readonly coordinator?: string | undefined;
  /**
   * Several coordinator addresses, tried in order: a standby's `NOT_LEADER` names the leader to
   * follow (docs/protocol.md, "Standby coordinators and NOT_LEADER"). This, or `coordinator`.
   */
  readonly coordinators?: readonly string[] | undefined;
  /** TLS server name to verify instead of each dialled address's host. */
  readonly serverName?: string | undefined;
  readonly tls: TlsFiles;
  /** Per-call deadline; default 10 s. */
  readonly timeoutMs?: number;
}

/** One event from the coordinator's bus. */
export interface AdminEvent {
  readonly kind: string;
  readonly ts: number;
  readonly body: Record<string, unknown>;
}

/** The admin client's own failures: the configured coordinators gave no leader's answer. */
export const ADMIN_CLIENT_ERRORS = {
  /** A leader a standby named answered `NOT_LEADER` too: two standbys naming each other, or a leadership change under way. */
  LEADER_BOUNCED: 'LEADER_BOUNCED',
  /** None of several configured coordinators answered, or every one that did was a standby naming no leader. */
  NO_LEADER_REACHED: 'NO_LEADER_REACHED',
} as const;
export type AdminClientErrorCode = keyof typeof ADMIN_CLIENT_ERRORS;

/** Why an admin call found no leader among the coordinators; `cause` is the last coordinator's answer. */
export class AdminClientError extends Error {
  readonly code: AdminClientErrorCode;
  /** The addresses dialled for the call, in order. */
  readonly context: { readonly dialled: readonly string[] };

  constructor(code: AdminClientErrorCode, message: string, context: { readonly dialled: readonly string[] }, options: { cause: unknown }) {
    super(message, options);
    this.name = 'AdminClientError';
    this.code = code;
    this.context = context;
  }
}

/** Where one admin call stands among the coordinators it may dial. */
export interface AdminRoute {
  /** The configured addresses, in order (at least one). */
  readonly addresses: readonly string[];
  /** The configured address dialled last, or the one a standby's hint was followed from. */
  readonly index: number;
  /** The address to dial: `addresses[index]`, or a leader a standby named. */
  readonly current: string;
  /** Whether `current` is a leader a standby named (a second `NOT_LEADER` there is an error). */
  readonly followed: boolean;
  /** Every address dialled for this call so far, `current` last. */
  readonly dialled: readonly string[];
  /** How many configured addresses this call has dialled. */
  readonly tried: number;
}

/** What an admin call does after a coordinator's answer failed it: dial another address, or fail with `error`. */
export type AdminStep = { readonly kind: 'dial'; readonly route: AdminRoute } | { readonly kind: 'fail'; readonly error: unknown };

/** The route of a call that starts at `addresses[index]` (the address that answered the last call). */
export function startRoute(addresses: readonly string[], start: { readonly index: number; readonly current: string } = { index: 0, current: addresses[0] ?? '' }): AdminRoute {
  invariant(addresses.length > 0 && start.current !== '', 'an admin client has at least one coordinator address');
  const configured = addresses[start.index] === start.current;
  return { addresses, index: start.index, current: start.current, followed: false, dialled: [start.current], tried: configured ? 1 : 0 };
}

/**
 * Decides, after `err` failed a call dialled at `route.current`, where the call goes next
 * (docs/protocol.md, "Standby coordinators and NOT_LEADER", as a site does it, but without waiting:
 * an admin is a person at a terminal):
 * - `NOT_LEADER` naming another address: that leader, once; `NOT_LEADER` from a leader followed to
 *   is `LEADER_BOUNCED`;
 * - `NOT_LEADER` naming no leader, or `UNAVAILABLE` that grpc-js raised (no coordinator there, the
 *   connection or its TLS failed): the next configured address not yet dialled; once every one has
 *   been, the error itself with one address configured (as before there were several), else
 *   `NO_LEADER_REACHED`;
 * - anything else (a leader's answer: refusals, deadlines, its own `UNAVAILABLE` verdicts): `err`.
 */
export function afterAdminFailure(route: AdminRoute, err: unknown): AdminStep {
  const refusal = readGrpcRefusal(err);
  if (refusal === undefined) return { kind: 'fail', error: err };
  const notLeader = refusal.said?.code === NOT_LEADER;
  if (notLeader && route.followed) {
    const from = route.dialled[route.dialled.length - 2] ?? '?';
    const named = refusal.leader ? `, naming ${refusal.leader}` : ', naming no leader';
    return fail(route, 'LEADER_BOUNCED', `${route.current}, which ${from} named as the leader, answered NOT_LEADER too${named}; try again when the coordinators agree on a leader`, err);
  }
  if (notLeader && refusal.leader !== undefined && refusal.leader !== route.current) {
    return { kind: 'dial', route: { ...route, current: refusal.leader, followed: true, dialled: [...route.dialled, refusal.leader] } };
  }
  if (!notLeader && !(refusal.status === grpc.status.UNAVAILABLE && refusal.said === undefined)) return { kind: 'fail', error: err };
  const { addresses } = route;
  if (route.tried >= addresses.length) {
    if (addresses.length === 1) return { kind: 'fail', error: err };
    return fail(route, 'NO_LEADER_REACHED', `no coordinator answered as the leader; dialled ${route.dialled.join(', ')}; the last said: ${refusal.reason}`, err);
  }
  const index = (route.index + 1) % addresses.length;
  const current = addresses[index];
  invariant(current !== undefined, 'a route\'s index lies within its addresses');
  return { kind: 'dial', route: { addresses, index, current, followed: false, dialled: [...route.dialled, current], tried: route.tried + 1 } };
}

function fail(route: AdminRoute, code: AdminClientErrorCode, message: string, cause: unknown): AdminStep {
  return { kind: 'fail', error: new AdminClientError(code, message, { dialled: route.dialled }, { cause }) };
}

/** Channels to leaders a standby named beyond the configured addresses, kept open at most. */
const MAX_FOLLOWED_CHANNELS = 4;

/**
 * A connected admin client. With several coordinator addresses each call follows a standby's
 * `NOT_LEADER` to the leader ({@link afterAdminFailure}); later calls start at the address that
 * answered last, so `admin watch` asks a standby once, not every second.
 */
export class AdminClient {
  private readonly addresses: readonly string[];
  private readonly channels = new Map<string, AdminServiceClient>();
  private readonly credentials: (address: string) => grpc.ChannelCredentials;
  private readonly channelOptions: grpc.ChannelOptions;
  private readonly timeoutMs: number;
  /** Where the last successful call was answered. */
  private home: { index: number; current: string };

  constructor(o: AdminClientOptions) {
    invariant((o.coordinator === undefined) !== (o.coordinators === undefined), 'an admin client is given coordinator or coordinators, not both');
    this.addresses = o.coordinators ? [...o.coordinators] : [o.coordinator ?? ''];
    invariant(this.addresses.length > 0 && this.addresses.every((a) => a !== ''), 'an admin client has at least one coordinator address');
    const tls = readTlsFiles(o.tls);
    // The same receive window as sites (common/grpc-window.ts): large answers are not held to 64 KiB per round trip.
    const options: grpc.ChannelOptions = { ...clientWindowOptions() };
    if (o.serverName) options['grpc.default_authority'] = o.serverName;
    this.channelOptions = options;
    // Each address's name is checked when it is dialled (a followed leader's too, so a hint is
    // trusted no further than TLS); an IP address is not sent as SNI (common/grpc-tls.ts).
    this.credentials = (address) => mutualTlsCredentials(tls, { target: address, serverName: o.serverName });
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.home = { index: 0, current: this.addresses[0]! };
  }

  /** The client for `address`, made on first use. */
  private channel(address: string): AdminServiceClient {
    const known = this.channels.get(address);
    if (known) return known;
    if (!this.addresses.includes(address)) {
      const followed = [...this.channels.keys()].filter((a) => !this.addresses.includes(a));
      // The oldest goes: a hint names the leader of now, and calls on the old one end on their own.
      for (const old of followed.slice(0, Math.max(0, followed.length - MAX_FOLLOWED_CHANNELS + 1))) {
        this.channels.get(old)?.close();
        this.channels.delete(old);
      }
    }
    const made = new (loadProto().fedhpc.v1.AdminService)(address, this.credentials(address), this.channelOptions);
    this.channels.set(address, made);
    return made;
  }

  /**
   * Runs `attempt` at the address that answered last, following standbys to the leader. A failure
   * after `attempt` marked the call as answered (`answered()`: a stream that delivered) is the call's own.
   */
  private async routed<T>(attempt: (client: AdminServiceClient, answered: () => void) => Promise<T>): Promise<T> {
    let route = startRoute(this.addresses, this.home);
    for (;;) {
      const at = route;
      let answered = false;
      const settle = (): void => {
        answered = true;
        this.home = { index: at.index, current: at.current };
      };
      try {
        const value = await attempt(this.channel(at.current), settle);
        settle();
        return value;
      } catch (err) {
        if (answered) throw err;
        const step = afterAdminFailure(at, err);
        if (step.kind === 'fail') throw step.error;
        route = step.route;
      }
    }
  }

  private unary<Res>(fn: (client: AdminServiceClient, deadline: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => void): Promise<Res> {
    return this.routed(
      (client) =>
        new Promise<Res>((resolve, reject) =>
          fn(client, { deadline: Date.now() + this.timeoutMs }, (err, res) => (err || res === undefined ? reject(err ? asDroppedConnection(err) : new Error('empty response')) : resolve(res))),
        ),
    );
  }

  status(): Promise<StatusResponse__Output> {
    return this.unary((c, opts, cb) => c.Status({}, opts, cb));
  }

  sites(): Promise<SitesResponse__Output> {
    return this.unary((c, opts, cb) => c.Sites({}, opts, cb));
  }

  rounds(): Promise<RoundsResponse__Output> {
    return this.unary((c, opts, cb) => c.Rounds({}, opts, cb));
  }

  /** Every attempt of round `round`: participants, dropped, phases, bytes, hashes, eval. */
  round(round: number): Promise<RoundDetail__Output> {
    return this.unary((c, opts, cb) => c.Round({ round }, opts, cb));
  }

  /** Starts a run from a run file's JSON text; `source` names the file in error messages. */
  startRun(runJson: string, source: string): Promise<RunControlResponse__Output> {
    return this.unary((c, opts, cb) => c.StartRun({ runJson, source }, opts, cb));
  }

  pause(reason = ''): Promise<RunControlResponse__Output> {
    return this.unary((c, opts, cb) => c.PauseRun({ reason }, opts, cb));
  }

  resume(): Promise<RunControlResponse__Output> {
    return this.unary((c, opts, cb) => c.ResumeRun({}, opts, cb));
  }

  abort(reason = ''): Promise<RunControlResponse__Output> {
    return this.unary((c, opts, cb) => c.AbortRun({ reason }, opts, cb));
  }

  /** Tells the coordinator about a certificate the admin signed from a site's CSR. */
  approveSite(siteId: string, certificatePem: string): Promise<ApproveSiteResponse__Output> {
    return this.unary((c, opts, cb) => c.ApproveSite({ siteId, certificatePem }, opts, cb));
  }

  revokeSite(siteId: string, reason = ''): Promise<RevokeSiteResponse__Output> {
    return this.unary((c, opts, cb) => c.RevokeSite({ siteId, reason }, opts, cb));
  }

  /** The site's recent log lines as the coordinator saw them (newest last). */
  siteLogs(siteId: string, limit = 0): Promise<SiteLogsResponse__Output> {
    return this.unary((c, opts, cb) => c.SiteLogs({ siteId, limit }, opts, cb));
  }

  /** GPU-hour accounting from the sites' signed receipts, per run and site (`admin usage`). */
  usage(filter: { siteId?: string; fromMs?: number; toMs?: number } = {}): Promise<UsageResponse__Output> {
    return this.unary((c, opts, cb) => c.Usage({ siteId: filter.siteId ?? '', fromMs: filter.fromMs ?? 0, toMs: filter.toMs ?? 0 }, opts, cb));
  }

  /** Waits until the address that answered last (at first, the first configured one) accepts a connection, or the deadline passes. */
  waitForReady(deadlineMs: number): Promise<void> {
    return new Promise((resolve, reject) => this.channel(this.home.current).waitForReady(deadlineMs, (err) => (err ? reject(err) : resolve())));
  }

  /**
   * Follows the event stream. `onEvent` gets each event; the promise settles when the stream ends
   * or `signal` aborts. A stream that fails before its first event is opened again as a unary call
   * would be sent again: at the leader a standby names, or the next configured address.
   */
  events(onEvent: (e: AdminEvent) => void, signal: AbortSignal): Promise<void> {
    return this.routed((client, answered) => {
      const call = client.Events({}, { deadline: Infinity });
      const abort = (): void => call.cancel();
      signal.addEventListener('abort', abort, { once: true });
      return new Promise<void>((resolve, reject) => {
        call.on('data', (e: { kind: string; tsMs: string; json: string }) => {
          answered();
          onEvent({ kind: e.kind, ts: Number(e.tsMs), body: JSON.parse(e.json) as Record<string, unknown> });
        });
        call.on('end', () => resolve());
        call.on('error', (err: grpc.ServiceError) => {
          if (err.code === grpc.status.CANCELLED && signal.aborted) return resolve();
          // Stopped by the caller: not a reason to dial anyone else.
          if (signal.aborted) answered();
          reject(signal.aborted ? err : asDroppedConnection(err));
        });
      }).finally(() => signal.removeEventListener('abort', abort));
    });
  }

  close(): void {
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
  }
}

/**
 * An admin call's failure with a dropped connection told as grpc-js tells one either way
 * ({@link droppedConnection}: CANCELLED "Call cancelled" or UNAVAILABLE), as UNAVAILABLE: the admin
 * client cancels no call it still awaits, so a standby pair's admin dials on, or waits for the new
 * leader, whichever way the race went. grpc-js's words stay in the details.
 */
function asDroppedConnection(err: grpc.ServiceError): grpc.ServiceError {
  if (err.code !== grpc.status.CANCELLED || !droppedConnection(err)) return err;
  const details = `Connection dropped (grpc-js said: ${err.details || err.message})`;
  return Object.assign(new Error(`${grpc.status.UNAVAILABLE} UNAVAILABLE: ${details}`, { cause: err }), { code: grpc.status.UNAVAILABLE, details, metadata: err.metadata });
}

/**
 * Whether an admin call failed only because no coordinator answered as the leader — one gone, its
 * standby not yet leading (a failover under way): the client's own `NO_LEADER_REACHED` or
 * `LEADER_BOUNCED` with several addresses, `UNAVAILABLE` with one (NOT_LEADER travels as it too).
 */
export function noLeaderAnswered(err: unknown): boolean {
  if (err instanceof AdminClientError) return true;
  return (err as { code?: unknown } | undefined)?.code === grpc.status.UNAVAILABLE;
}

/**
 * Follows the coordinator's events until `signal` aborts. With `reconnect` (a standby pair), a
 * stream that ends or fails for want of a leader is opened again, at whichever coordinator leads
 * then, once `reconnect` resolves; without it the stream's end is the caller's.
 */
export async function followEvents(admin: AdminClient, onEvent: (e: AdminEvent) => void, reconnect: (() => Promise<void>) | undefined, signal: AbortSignal): Promise<void> {
  for (;;) {
    try {
      await admin.events(onEvent, signal);
      if (!reconnect || signal.aborted) return;
    } catch (err) {
      if (!reconnect || signal.aborted || !noLeaderAnswered(err)) throw err;
    }
    await reconnect();
  }
}
