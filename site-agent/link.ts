/**
 * The agent's port to the coordinator: one connection's `SiteService` client, called in the
 * agent's own terms. Requests are built here and answers decoded by the wire edge (wire.ts), so the
 * connection loop, the round job and the secure stages never handle a generated message. Transfers
 * and receipts, which stream or retry on their own terms, take `client` itself.
 */
import type * as grpc from '@grpc/grpc-js';
import type { HeartbeatRequest, HeartbeatResponse__Output, SiteServiceClient } from '../proto/index.js';
import { wireProgress, type TransferSnapshot } from './progress.js';
import type { WireShare } from './secure/session.js';
import { joinFromWire, taskFromWire, type AttemptRef, type DecodedTask, type JoinInfo } from './wire.js';

/** How long a unary call may take before the agent stops waiting for it. */
const CALL_DEADLINE_MS = 15_000;
/** Failure reports are best effort: a shorter wait, and no answer is needed. */
const REPORT_DEADLINE_MS = 10_000;

/** What the agent says about itself at `Join`. */
export interface JoinHello {
  readonly protocolVersion: number;
  readonly siteId: string;
  readonly agentVersion: string;
}

/** What a heartbeat reports. */
export interface HeartbeatReport {
  readonly activity: string;
  readonly round: number;
  readonly progress: number;
  readonly trainLoss: number;
  readonly transfer: TransferSnapshot | undefined;
}

/** A failure of this site's part of an attempt, for the coordinator to drop it at once. */
export interface FailureReport {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
}

/** A score of a global model. */
export interface EvalScore {
  readonly runId: string;
  readonly modelRound: number;
  readonly modelSha256: string;
  readonly loss: number;
  readonly samples: number;
}

/** An attempt's signed public keys, with the certificate that vouches for them. */
export interface KeysAdvertisement {
  readonly siteId: string;
  readonly cPk: Uint8Array;
  readonly sPk: Uint8Array;
  readonly signature: Uint8Array;
  readonly certificatePem: string;
}

/** A share revealed at unmasking. */
export interface RevealedShare {
  readonly owner: string;
  readonly kind: 'self_seed' | 'mask_key';
  readonly x: number;
  readonly y: Uint8Array;
}

/** How the task stream ended: with an error (a cancel included) or closed by the coordinator. */
export type TaskStreamEnd = { readonly how: 'error'; readonly error: Error } | { readonly how: 'end' };

/** An open task stream. */
export interface TaskStream {
  cancel(): void;
  /** Settles once, when the stream ends; never rejects. */
  readonly closed: Promise<TaskStreamEnd>;
}

/** The calls the secure stages make (Bonawitz et al. 2017, rounds 0 to 3), and their failure report. */
export type SecureLink = Pick<CoordinatorLink, 'advertiseKeys' | 'submitShares' | 'signSurvivors' | 'revealShares' | 'reportFailure'>;

/** One connection to the coordinator. */
export class CoordinatorLink {
  private closed = false;
  /** The open `Heartbeats` stream, if any (see `heartbeat`). */
  private beats: grpc.ClientDuplexStream<HeartbeatRequest, HeartbeatResponse__Output> | undefined;
  /** Runs for each answer on `beats`: the latest heartbeat's `onContact`. */
  private onBeatAnswered: () => void = () => undefined;

  constructor(
    readonly client: SiteServiceClient,
    /** The coordinator's address this connection dials (`host:port`). */
    readonly address: string,
  ) {}

  /**
   * The client while the connection is open, undefined once it is closed: for callers that choose a
   * client now and call it later (receipts), since a call on a closed channel throws at once.
   */
  get openClient(): SiteServiceClient | undefined {
    return this.closed ? undefined : this.client;
  }

  /** Joins; rejects with the coordinator's refusal, or with the signal's reason once it aborts. */
  join(hello: JoinHello, signal: AbortSignal): Promise<JoinInfo> {
    // The lifetime signal outlives every connection: a listener left on it per Join leaked one
    // closure per reconnect (and Node warned after ten), so it goes when the call settles.
    let onAbort: (() => void) | undefined;
    return new Promise<JoinInfo>((resolve, reject) => {
      signal.throwIfAborted();
      this.client.Join(hello, { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res) => {
        if (err || !res) return reject(err ?? new Error('empty Join response'));
        resolve(joinFromWire(res));
      });
      onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
    }).finally(() => {
      if (onAbort) signal.removeEventListener('abort', onAbort);
    });
  }

  /** Opens the task stream; each task reaches `onTask` decoded (or refused) by the wire edge. */
  openTasks(onTask: (task: DecodedTask) => void): TaskStream {
    const call = this.client.Tasks({}, { deadline: Infinity });
    const closed = new Promise<TaskStreamEnd>((resolve) => {
      call.on('data', (task) => onTask(taskFromWire(task)));
      call.on('error', (error) => resolve({ how: 'error', error }));
      call.on('end', () => resolve({ how: 'end' }));
    });
    return { cancel: () => call.cancel(), closed };
  }

  /**
   * Sends a heartbeat on the connection's `Heartbeats` stream, opened by the first heartbeat and
   * again by the next one after it ended; `onContact` runs when the coordinator answered it. An
   * error ends the stream and nothing else: heartbeats are status, and the task stream decides
   * about the connection. A stalled stream buffers its few bytes a heartbeat until keepalive ends
   * the connection.
   */
  heartbeat(r: HeartbeatReport, onContact: () => void): void {
    if (this.closed) return;
    this.onBeatAnswered = onContact;
    if (!this.beats) {
      const call = this.client.Heartbeats();
      const ended = (): void => {
        if (this.beats === call) this.beats = undefined;
      };
      call.on('data', () => this.onBeatAnswered());
      call.on('error', ended);
      call.on('end', ended);
      this.beats = call;
    }
    this.beats.write({ activity: r.activity, round: r.round, progress: r.progress, trainLoss: r.trainLoss, transfer: r.transfer ? wireProgress(r.transfer) : null });
  }

  /**
   * Reports a failed attempt at this site; best effort (the coordinator's deadline covers a lost
   * report). Nothing is sent once the connection is closed: a step that failed because the
   * connection broke often gets here just after the run loop closed it, and a call on a closed
   * channel throws at once (grpc-js), which would end the agent.
   */
  reportFailure(a: AttemptRef, f: FailureReport): void {
    if (this.closed) return;
    this.client.ReportFailure(
      { runId: a.runId, round: a.round, attempt: a.attempt, code: f.code, message: f.message, retryable: f.retryable },
      { deadline: Date.now() + REPORT_DEADLINE_MS },
      () => undefined,
    );
  }

  /** Reports a model's score. */
  reportEval(s: EvalScore): Promise<void> {
    return unary((cb) => this.client.ReportEval({ ...s }, { deadline: Date.now() + CALL_DEADLINE_MS }, cb));
  }

  /** Round 0: advertises this attempt's public keys. */
  advertiseKeys(a: AttemptRef, ad: KeysAdvertisement): Promise<void> {
    return unary((cb) =>
      this.client.AdvertiseKeys(
        { runId: a.runId, round: a.round, attempt: a.attempt, siteId: ad.siteId, cPublicKey: ad.cPk, sPublicKey: ad.sPk, signature: ad.signature, certificatePem: ad.certificatePem },
        { deadline: Date.now() + CALL_DEADLINE_MS },
        cb,
      ),
    );
  }

  /** Round 1: sends the shares sealed for the neighbours. */
  submitShares(a: AttemptRef, shares: readonly WireShare[]): Promise<void> {
    const wire = shares.map((x) => ({ fromSite: x.from, toSite: x.to, nonce: x.nonce, ciphertext: x.ciphertext }));
    return unary((cb) => this.client.SubmitShares({ runId: a.runId, round: a.round, attempt: a.attempt, shares: wire }, { deadline: Date.now() + CALL_DEADLINE_MS }, cb));
  }

  /** Consistency check: sends this site's signature of the survivor list. */
  signSurvivors(a: AttemptRef, siteId: string, signature: Uint8Array): Promise<void> {
    return unary((cb) => this.client.SignSurvivors({ runId: a.runId, round: a.round, attempt: a.attempt, siteId, signature }, { deadline: Date.now() + CALL_DEADLINE_MS }, cb));
  }

  /** Round 3: reveals the shares unmasking needs. */
  revealShares(a: AttemptRef, shares: readonly RevealedShare[]): Promise<void> {
    return unary((cb) => this.client.RevealShares({ runId: a.runId, round: a.round, attempt: a.attempt, shares: [...shares] }, { deadline: Date.now() + CALL_DEADLINE_MS }, cb));
  }

  /** Closes the connection; fire-and-forget calls on it are dropped from now on. */
  close(): void {
    this.closed = true;
    this.beats?.cancel();
    this.client.close();
  }
}

/** A unary call as a promise; a call that throws at once (a closed channel) rejects it too. */
function unary(call: (cb: (err: grpc.ServiceError | null) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => call((err) => (err ? reject(err) : resolve())));
}
