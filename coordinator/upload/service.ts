/**
 * The `Upload` RPC: one stream per stripe of a site's delta. Keeps each site's `UploadSession`
 * across broken streams of the same round attempt, limits the streams a site holds at once, ends
 * stalled uploads by an idle (no-progress) timeout, and hands a complete, verified delta to the
 * round driver. Protocol violations drop the site; a broken stream alone does not.
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../common/logger.js';
import type { Clock } from '../core/clock.js';
import type { TransferLimits, UploadRoundPort } from '../shell/ports.js';
import { uploadFrameFromWire, type UploadCall } from '../service/wire.js';
import type { UploadFrame } from './frames.js';
import { CoordinatorError, toServiceError } from '../core/errors.js';
import type { SiteRecord } from '../sites/registry.js';
import type { StateStore } from '../state/store.js';
import { readMessages, writeWithBackpressure } from '../service/streams.js';
import { UploadSession, type StreamOwner, type StripeState } from './session.js';
import { StripeReceiver, streamWindow } from './stream.js';
import { isFoldRefusal, partBytes, type UploadIntent } from './header.js';
import { PieceLog, pieceLogPath, takeEarlierUpload } from './reuse.js';
import type { BudgetGrant, TransferBudget } from './budget.js';

/** What uploads keep of a site: its open streams (a revocation aborts them) and its byte counts. */
export interface UploadSites {
  get(site: string): Pick<SiteRecord, 'uploads' | 'bytesUp' | 'bytesReused'> | undefined;
  touch(site: string, activity?: string, progress?: number): void;
}

export interface UploadServiceOptions {
  /** The open round, as uploads see it (the coordinator's driver, or an aggregator shard's admissions). */
  readonly driver: UploadRoundPort;
  readonly registry: UploadSites;
  /** Where the attempts' spools are. */
  readonly store: Pick<StateStore, 'spoolDir' | 'spoolAttempts'>;
  readonly logger: Logger;
  readonly limits: () => TransferLimits;
  /** The one budget of in-flight upload bytes shared by every site's streams. */
  readonly budget: TransferBudget;
  /** Times the stream and session idle timeouts (the coordinator passes the system clock). */
  readonly clock: Clock;
}


/** How often a stream waiting for the budget tells its agent so (agents drop a stream silent for 1 s or more). */
const QUEUED_REPORT_MS = 500;

/** Errors after which the site's partial upload is kept for a resume (at a shard: not yet admitted, ask again). */
const RESUMABLE = new Set(['UPLOAD_INTERRUPTED', 'TOO_MANY_STREAMS', 'NOT_ADMITTED']);

/** Serves `Upload` streams and holds every site's resumable upload of the open attempt. */
export class UploadService {
  private readonly sessions = new Map<string, UploadSession>();
  /** Per-site queue: headers of one site are handled one at a time (session and stripe set-up). */
  private readonly setup = new Map<string, Promise<unknown>>();

  constructor(private readonly o: UploadServiceOptions) {}

  /** Serves one stream of an authenticated, joined site. */
  async serve(call: UploadCall, site: string): Promise<void> {
    const limits = this.o.limits();
    const abort = new AbortController();
    let settle!: () => void;
    const owner: StreamOwner = { abort, settled: new Promise<void>((r) => (settle = r)) };
    const messages = readMessages(call, abort.signal, limits.idleMs, this.o.clock, uploadFrameFromWire);
    // A client gone while its stream waits for the shared budget must leave the queue at once.
    call.once('cancelled', () => abort.abort(new CoordinatorError('UPLOAD_INTERRUPTED', 'the client cancelled the stream')));
    const rec = this.o.registry.get(site);
    rec?.uploads.add(abort);
    let session: UploadSession | undefined;
    let file: FileHandle | undefined;
    let grant: BudgetGrant | undefined;
    try {
      const first = await messages.next();
      if (first.done || first.value.kind !== 'header') throw new CoordinatorError('UPLOAD_INVALID', 'an upload must start with a header');
      const intent = this.o.driver.checkUpload(first.value.header, site);
      // One SHA-256 over the stream's bytes proves a stripe only where it is the whole upload.
      const wholeDigest = first.value.header.wholeDigest && intent.stripe.count === 1;
      const attached = await this.serialised(site, async () => {
        const s = await this.sessionFor(site, intent, limits, wholeDigest);
        return { s, stripe: await this.attach(s, intent, owner, limits) };
      });
      session = attached.s;
      const stripe = attached.stripe;
      if (stripe.done && session.complete()) {
        // Every stripe was kept from an earlier attempt: the streams that ask are told it is verified.
        const whole = await (session.completion ??= this.finish(session, ''));
        await writeWithBackpressure(call, { result: { accepted: true, receivedBytes: partBytes(session.intent), message: 'verified', complete: true, sha256: whole.sha256 } }, abort.signal);
      } else if (stripe.done) {
        // An agent that restarted re-opens every stripe: one already received is just confirmed.
        await writeWithBackpressure(call, { result: { accepted: true, receivedBytes: stripe.end - stripe.start, message: 'stripe already received', complete: false } }, abort.signal);
      } else {
        grant = await this.reserveWindow(call, messages, session, streamWindow(limits.windowBytes, intent.chunkBytes), abort.signal);
        file = await open(session.path, 'r+');
        await this.receive(call, messages, session, stripe, file, { windowBytes: grant.bytes, wholeDigest }, abort.signal);
      }
      call.end();
    } catch (err) {
      this.fail(site, session, err, call);
    } finally {
      messages.dispose();
      grant?.release();
      rec?.uploads.delete(abort);
      await file?.close();
      for (const s of session?.stripes.values() ?? []) if (s.owner === owner) s.owner = undefined;
      settle();
    }
  }

  private async receive(
    call: UploadCall,
    messages: AsyncIterator<UploadFrame>,
    session: UploadSession,
    stripe: StripeState,
    file: FileHandle,
    stream: { readonly windowBytes: number; readonly wholeDigest: boolean },
    signal: AbortSignal,
  ): Promise<void> {
    const site = session.site;
    const rec = this.o.registry.get(site);
    const receiver = new StripeReceiver(session, stripe, file, call, {
      ...stream,
      signal,
      onBytes: (n) => {
        this.o.driver.countBytes('up', n);
        if (rec) rec.bytesUp += n;
      },
      finish: (sha) => this.finish(session, sha),
      logResend: (offset, reason) => this.o.logger.warn({ site, round: session.round, phase: 'upload', offset, reason }, 'asked for upload bytes again'),
    });
    if (stripe.acked > stripe.start) this.o.logger.info({ site, round: session.round, phase: 'upload', offset: stripe.acked, stripe: stripe.start }, 'upload resumed');
    await receiver.resume();
    for (;;) {
      const next = await messages.next();
      if (next.done) throw new CoordinatorError('UPLOAD_INTERRUPTED', `stream ended at ${stripe.received} of stripe [${stripe.start}, ${stripe.end}) without a trailer`);
      if (await receiver.handle(next.value)) return;
    }
  }

  /**
   * Reserves the stream's window from the shared budget before the stream is accepted. While it
   * waits, the agent is told so (a `queued` reply) and neither the stream's nor the session's
   * idle timeout runs: waiting for other sites' bytes is not a stall of this one.
   */
  private async reserveWindow(
    call: UploadCall,
    messages: { touch(): void },
    session: UploadSession,
    windowBytes: number,
    signal: AbortSignal,
  ): Promise<BudgetGrant> {
    let logged = false;
    let reporting = false; // a client that does not read gets no pile of reports (nor of 'drain' waits)
    const budget = this.o.budget;
    return budget.acquire(session.site, windowBytes, signal, () => {
      messages.touch();
      session.progressed();
      const { usedBytes, totalBytes, waiting } = budget.usage();
      if (!reporting) {
        reporting = true;
        void writeWithBackpressure(call, { queued: { budgetBytes: totalBytes, usedBytes, waitingStreams: waiting } }, signal)
          .catch(() => undefined)
          .finally(() => (reporting = false));
      }
      if (!logged) {
        logged = true;
        this.o.logger.info({ site: session.site, round: session.round, phase: 'upload', usedBytes, totalBytes, waiting }, 'upload stream queued: the in-flight budget is in use');
      }
    }, QUEUED_REPORT_MS);
  }

  private serialised<T>(site: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.setup.get(site) ?? Promise.resolve()).then(fn, fn);
    const tail = run.catch(() => undefined);
    this.setup.set(site, tail);
    void tail.then(() => {
      if (this.setup.get(site) === tail) this.setup.delete(site);
    });
    return run;
  }

  /**
   * The site's session for this attempt, created (and the upload begun) on its first stream;
   * `wholeDigest`: that stream proves its bytes whole (what an earlier attempt's spool may keep).
   */
  private async sessionFor(site: string, intent: UploadIntent, limits: TransferLimits, wholeDigest: boolean): Promise<UploadSession> {
    const known = this.sessions.get(site);
    if (known && known.round === intent.round && known.attempt === intent.attempt) {
      // A delta kept whole from an earlier attempt is confirmed to each of the site's streams.
      if (known.completion) return known;
      if (known.finished) throw new CoordinatorError('ROUND_CLOSED', `the upload of round ${intent.round}.${intent.attempt} is already complete`);
      if (this.o.driver.siteStatus(site) !== 'uploading') throw new CoordinatorError('NOT_INVITED', `site ${site} no longer takes part in round ${intent.round}.${intent.attempt}`);
      return known;
    }
    known?.close(new CoordinatorError('ROUND_CLOSED', 'a newer round attempt started'));
    this.o.driver.beginUpload(site, intent);
    this.o.registry.touch(site, 'upload', 0);
    const dir = await this.o.store.spoolDir(intent.round, intent.attempt);
    const path = join(dir, `${site}.delta`);
    const session = new UploadSession({ site, intent, path, idleMs: limits.idleMs, onIdle: (s) => this.idle(s, limits.idleMs), clock: this.o.clock });
    const reused = await this.reuseEarlier(session, wholeDigest);
    if (!reused) await (await open(path, 'w', 0o600)).close();
    this.sessions.set(site, session);
    return session;
  }

  /**
   * A named delta (`contentId`) starts from what the site verifiably uploaded of it in an earlier
   * attempt of the round (reuse.ts), and keeps a piece log a later attempt can start from in turn.
   * A stream that proves its bytes whole keeps every byte the earlier receiver acknowledged: its
   * trailer's SHA-256 covers them. Resolves whether the spool came from an earlier attempt.
   */
  private async reuseEarlier(session: UploadSession, wholeDigest: boolean): Promise<boolean> {
    const { intent, site } = session;
    const contentKey = intent.contentKey;
    if (contentKey === undefined) return false;
    const named = { ...intent, contentKey };
    const taken = await takeEarlierUpload({ site, intent: named, earlier: await this.o.store.spoolAttempts(intent.round), path: session.path, digest: session.digest, wholeDigest, logger: this.o.logger });
    if (taken) {
      session.seed(taken.stripes);
      this.o.driver.countBytes('reused', taken.bytes);
      const rec = this.o.registry.get(site);
      if (rec) rec.bytesReused += taken.bytes;
      this.o.logger.info(
        { site, round: intent.round, attempt: intent.attempt, phase: 'upload', fromAttempt: taken.fromAttempt, bytes: taken.bytes, totalBytes: intent.totalBytes, stripesDone: taken.stripes.filter((s) => s.keptTo === s.end && s.wholeOnly !== true).length },
        taken.fromAttempt === intent.attempt
          ? 'upload resumed from the spool this receiver kept before it restarted: its verified bytes are not sent again'
          : 'upload carried over from an earlier attempt: its verified bytes are not sent again',
      );
    }
    session.pieceLog = await PieceLog.create(session.path, named, taken, this.o.logger);
    return taken !== undefined;
  }

  /** Attaches `owner` to the stripe its header names: within the stream limit, taking over a stale stream. */
  private async attach(session: UploadSession, intent: UploadIntent, owner: StreamOwner, limits: TransferLimits): Promise<StripeState> {
    const others = session.otherStreams(intent.stripe.start);
    if (others + 1 > limits.maxStreamsPerSite) {
      throw new CoordinatorError('TOO_MANY_STREAMS', `site ${session.site} already has ${others} upload streams open, the limit is ${limits.maxStreamsPerSite}`, {
        open: others,
        limit: limits.maxStreamsPerSite,
      });
    }
    const stripe = session.stripeFor(intent);
    const previous = stripe.owner;
    if (previous) {
      // The agent came back before we noticed its old stream break: the new stream takes over.
      previous.abort.abort(new CoordinatorError('UPLOAD_INTERRUPTED', 'superseded by a newer stream for the same stripe'));
      await previous.settled;
    }
    if (!stripe.done) stripe.owner = owner;
    session.progressed();
    return stripe;
  }

  /** Verifies the whole delta and hands it to the round. */
  private async finish(session: UploadSession, trailerSha256: string): Promise<{ sha256: string }> {
    const file = await open(session.path, 'r');
    let sha256: string;
    try {
      sha256 = await session.digest.finish(file, session.intent.part.end);
    } finally {
      await file.close();
    }
    if (trailerSha256 !== '' && trailerSha256 !== sha256) throw new CoordinatorError('CHECKSUM_MISMATCH', `delta SHA-256 is ${sha256}, the trailer says ${trailerSha256}`);
    session.finished = true;
    session.close(new CoordinatorError('ROUND_CLOSED', 'upload complete'));
    const accepted = this.o.driver.completeUpload(session.site, session.intent, { path: session.path, bytes: partBytes(session.intent), sha256 });
    if (!accepted) throw new CoordinatorError('ROUND_CLOSED', `round ${session.round}.${session.attempt} no longer takes this upload`);
    this.o.logger.info({ site: session.site, round: session.round, phase: 'upload', bytes: partBytes(session.intent) }, 'upload verified');
    return { sha256 };
  }

  private idle(session: UploadSession, idleMs: number): void {
    if (this.sessions.get(session.site) !== session || session.finished) return;
    const reason = `no upload progress for ${idleMs / 1000} s`;
    const removed = this.discard(session, new CoordinatorError('UPLOAD_INTERRUPTED', reason));
    this.o.driver.failSite(session.site, session.round, session.attempt, `UPLOAD_INTERRUPTED: ${reason}`);
    void removed.then(() => this.o.logger.warn({ site: session.site, round: session.round, phase: 'upload', idleS: idleMs / 1000 }, 'upload abandoned: no progress for the idle timeout'));
  }

  /** Ends a session that will not complete; its partial spool goes (no partial contribution stays). */
  private async discard(session: UploadSession, reason: CoordinatorError): Promise<void> {
    session.close(reason);
    if (this.sessions.get(session.site) === session) this.sessions.delete(session.site);
    await rm(session.path, { force: true }).catch(() => undefined);
    await rm(pieceLogPath(session.path), { force: true }).catch(() => undefined);
  }

  /** Reports a failed stream; drops the site unless the stream can be resumed. */
  private fail(site: string, session: UploadSession | undefined, err: unknown, call: UploadCall): void {
    const e = err instanceof CoordinatorError ? err : new CoordinatorError('UPLOAD_INTERRUPTED', (err as Error).message, {}, { cause: err });
    if (!call.destroyed && !call.cancelled) call.emit('error', toServiceError(e));
    if (!RESUMABLE.has(e.code)) {
      if (session && !session.finished) void this.discard(session, e);
      refused(this.o.driver, this.o.logger, site, e, session === undefined);
    } else {
      this.o.logger.info({ site, phase: 'upload', err: { code: e.code, message: e.message } }, 'upload stream ended, resumable');
    }
  }
}

/**
 * A refused upload, logged as `upload refused`; the site is dropped from the open attempt — a
 * header that fails its checks is still a broken contribution — unless the round is closed to it,
 * or only a folded part of a header (`atHeader`) was refused, which leaves the site free to send
 * its fresh work alone. The `Upload` stream and `AdmitUpload` (coordinator/shards/part-uploads.ts)
 * refuse alike.
 */
export function refused(driver: UploadRoundPort, logger: Logger, site: string, e: CoordinatorError, atHeader: boolean): void {
  if (e.code !== 'ROUND_CLOSED' && e.code !== 'NOT_INVITED' && !(atHeader && isFoldRefusal(e))) {
    const at = driver.uploadingAttempt();
    if (at) driver.failSite(site, at.round, at.attempt, `${e.code}: ${e.message}`);
  }
  logger.warn({ site, phase: 'upload', ...staleTrainerFields(e), err: { code: e.code, message: e.message } }, 'upload refused');
}

/** A trainer refused for its applied staleness is logged with the figures an operator tunes `maxAppliedSteps` by. */
function staleTrainerFields(e: CoordinatorError): Record<string, unknown> {
  if (e.code !== 'STALE_TRAINER') return {};
  const { round, appliedStaleness, limit } = e.context;
  return { round, appliedStaleness, limit };
}
