/**
 * The admin side of `AdminService`, for the CLI and `simulate`: typed calls with deadlines, wire
 * messages converted to plain objects in one place.
 */
import * as grpc from '@grpc/grpc-js';
import { clientWindowOptions } from '../common/grpc-window.js';
import { mutualTlsCredentials } from '../common/grpc-tls.js';
import { readTlsFiles, type TlsFiles } from '../common/tls.js';
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
  readonly coordinator: string;
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

/** A connected admin client. */
export class AdminClient {
  private readonly client: AdminServiceClient;
  private readonly timeoutMs: number;

  constructor(o: AdminClientOptions) {
    const tls = readTlsFiles(o.tls);
    // The same receive window as sites (common/grpc-window.ts): large answers are not held to 64 KiB per round trip.
    const options: grpc.ChannelOptions = { ...clientWindowOptions() };
    if (o.serverName) options['grpc.default_authority'] = o.serverName;
    // The coordinator's name is checked by these credentials; an IP address is not sent as SNI (common/grpc-tls.ts).
    const credentials = mutualTlsCredentials(tls, { target: o.coordinator, serverName: o.serverName });
    this.client = new (loadProto().fedhpc.v1.AdminService)(o.coordinator, credentials, options);
    this.timeoutMs = o.timeoutMs ?? 10_000;
  }

  private unary<Res>(fn: (deadline: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => void): Promise<Res> {
    return new Promise((resolve, reject) =>
      fn({ deadline: Date.now() + this.timeoutMs }, (err, res) => (err || res === undefined ? reject(err ?? new Error('empty response')) : resolve(res))),
    );
  }

  status(): Promise<StatusResponse__Output> {
    return this.unary((opts, cb) => this.client.Status({}, opts, cb));
  }

  sites(): Promise<SitesResponse__Output> {
    return this.unary((opts, cb) => this.client.Sites({}, opts, cb));
  }

  rounds(): Promise<RoundsResponse__Output> {
    return this.unary((opts, cb) => this.client.Rounds({}, opts, cb));
  }

  /** Every attempt of round `round`: participants, dropped, phases, bytes, hashes, eval. */
  round(round: number): Promise<RoundDetail__Output> {
    return this.unary((opts, cb) => this.client.Round({ round }, opts, cb));
  }

  /** Starts a run from a run file's JSON text; `source` names the file in error messages. */
  startRun(runJson: string, source: string): Promise<RunControlResponse__Output> {
    return this.unary((opts, cb) => this.client.StartRun({ runJson, source }, opts, cb));
  }

  pause(reason = ''): Promise<RunControlResponse__Output> {
    return this.unary((opts, cb) => this.client.PauseRun({ reason }, opts, cb));
  }

  resume(): Promise<RunControlResponse__Output> {
    return this.unary((opts, cb) => this.client.ResumeRun({}, opts, cb));
  }

  abort(reason = ''): Promise<RunControlResponse__Output> {
    return this.unary((opts, cb) => this.client.AbortRun({ reason }, opts, cb));
  }

  /** Tells the coordinator about a certificate the admin signed from a site's CSR. */
  approveSite(siteId: string, certificatePem: string): Promise<ApproveSiteResponse__Output> {
    return this.unary((opts, cb) => this.client.ApproveSite({ siteId, certificatePem }, opts, cb));
  }

  revokeSite(siteId: string, reason = ''): Promise<RevokeSiteResponse__Output> {
    return this.unary((opts, cb) => this.client.RevokeSite({ siteId, reason }, opts, cb));
  }

  /** The site's recent log lines as the coordinator saw them (newest last). */
  siteLogs(siteId: string, limit = 0): Promise<SiteLogsResponse__Output> {
    return this.unary((opts, cb) => this.client.SiteLogs({ siteId, limit }, opts, cb));
  }

  /** GPU-hour accounting from the sites' signed receipts, per run and site (`admin usage`). */
  usage(filter: { siteId?: string; fromMs?: number; toMs?: number } = {}): Promise<UsageResponse__Output> {
    return this.unary((opts, cb) => this.client.Usage({ siteId: filter.siteId ?? '', fromMs: filter.fromMs ?? 0, toMs: filter.toMs ?? 0 }, opts, cb));
  }

  /** Waits until the coordinator answers (or the deadline passes). */
  waitForReady(deadlineMs: number): Promise<void> {
    return new Promise((resolve, reject) => this.client.waitForReady(deadlineMs, (err) => (err ? reject(err) : resolve())));
  }

  /**
   * Follows the event stream. `onEvent` gets each event; the promise settles when the stream ends
   * or `signal` aborts.
   */
  events(onEvent: (e: AdminEvent) => void, signal: AbortSignal): Promise<void> {
    const call = this.client.Events({}, { deadline: Infinity });
    const abort = (): void => call.cancel();
    signal.addEventListener('abort', abort, { once: true });
    return new Promise<void>((resolve, reject) => {
      call.on('data', (e: { kind: string; tsMs: string; json: string }) => {
        onEvent({ kind: e.kind, ts: Number(e.tsMs), body: JSON.parse(e.json) as Record<string, unknown> });
      });
      call.on('end', () => resolve());
      call.on('error', (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED && signal.aborted ? resolve() : reject(err)));
    }).finally(() => signal.removeEventListener('abort', abort));
  }

  close(): void {
    this.client.close();
  }
}
