/**
 * The site's four secure-aggregation stages (SecAgg+, Bonawitz et al. 2017; Bell et al. 2020), as
 * the coordinator's task stream asks for them: make and advertise keys (round 0), check the
 * neighbours and share the secrets (round 1), sign the survivor list (consistency check), reveal
 * shares (round 3). Round 2, the masked upload, is the round job's (round-job.ts), which takes the
 * attempt's session from here.
 *
 * The attempt's secrets live in this store only, one attempt at a time, and are dropped when the
 * attempt is cancelled or has revealed its shares; nothing here is persisted or logged.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../common/logger.js';
import { SiteAgentError } from '../errors.js';
import type { FaultPoint } from '../faults.js';
import type { SecureLink } from '../link.js';
import { attemptKey, type AttemptRef, type ConsistencyStage, type KeysStage, type SecureStage, type SharesStage, type UnmaskStage } from '../wire.js';
import { SecureSession, type SecureParams } from './session.js';

/** One attempt's session and its parameters, as the masked upload needs them. */
export interface SecureAttempt {
  readonly session: SecureSession;
  readonly params: SecureParams;
}

/** What the secure stages need from the agent around them. */
export interface SecureStagesOptions {
  readonly site: string;
  readonly log: Logger;
  /** The connection the next call goes on. */
  readonly link: () => SecureLink;
  /** The site's private key and the federation CA (PEM) of the current connection. */
  readonly tls: () => { readonly key: string; readonly ca: string };
  /** The site certificate (PEM) as it is on disk now, sent with the keys it vouches for. */
  readonly readCertificate: () => string;
  readonly fault: FaultPoint;
  /** Reconnects when `err` says the coordinator forgot this session; whether it did. */
  readonly rejoinIfForgotten: (err: unknown, during: string) => boolean;
  /** Called when an attempt's secrets are spent: the agent may now be between rounds. */
  readonly onAttemptDone: () => void;
}

/** The secure stages of this site, and the secrets of its current attempt. */
export class SecureStages {
  private current: (SecureAttempt & { readonly key: string }) | undefined;

  constructor(private readonly o: SecureStagesOptions) {}

  /** Whether an attempt holds secrets here (the agent does not reconnect in the middle of one). */
  get active(): boolean {
    return this.current !== undefined;
  }

  /** Runs one stage; never rejects: a failure is reported so the coordinator drops this site at once. */
  async run(stage: SecureStage): Promise<void> {
    try {
      await this.step(stage);
    } catch (err) {
      if (this.o.rejoinIfForgotten(err, `secure aggregation step of round ${stage.round}`)) return;
      const e = err instanceof SiteAgentError ? err : undefined;
      const message = (err as Error).message;
      this.o.log.error({ round: stage.round, err: { code: e?.code ?? (err as grpc.ServiceError).code, message } }, 'secure aggregation step failed');
      this.o.link().reportFailure(stage, { code: e?.code ?? 'SECURE_STEP_FAILED', message, retryable: false });
    }
  }

  /** The session of attempt `a`; REFUSED when this site made no keys for it. */
  session(a: AttemptRef): SecureAttempt {
    const key = attemptKey(a);
    if (this.current?.key !== key) throw new SiteAgentError('REFUSED', `no secure session for ${key} (keys were never made here)`, false);
    return this.current;
  }

  /** Drops the secrets of attempt `a`, if they are the ones held (the coordinator cancelled it). */
  cancel(a: AttemptRef): void {
    if (this.current?.key === attemptKey(a)) this.current = undefined;
  }

  private step(stage: SecureStage): Promise<void> {
    switch (stage.kind) {
      case 'keys':
        return this.keys(stage);
      case 'shares':
        return this.shares(stage);
      case 'consistency':
        return this.consistency(stage);
      case 'unmask':
        return this.unmask(stage);
    }
  }

  /** Round 0: fresh key pairs for this attempt, advertised with the certificate's signature. */
  private async keys(t: KeysStage): Promise<void> {
    this.o.fault('keys');
    const tls = this.o.tls();
    const session = new SecureSession({ site: this.o.site, runId: t.runId, round: t.round, attempt: t.attempt, params: t.params, certificateKey: tls.key, caPem: tls.ca, now: () => new Date() });
    this.current = { key: attemptKey(t), session, params: t.params };
    const ad = session.advertisement();
    const certificatePem = this.o.readCertificate();
    await this.o.link().advertiseKeys(t, { siteId: this.o.site, cPk: ad.cPk, sPk: ad.sPk, signature: ad.signature, certificatePem });
    this.o.log.info({ round: t.round, attempt: t.attempt, phase: 'keys' }, 'keys advertised');
  }

  /** Round 1: checks every neighbour's advertisement and sends sealed shares. */
  private async shares(t: SharesStage): Promise<void> {
    this.o.fault('shares');
    const shares = this.session(t).session.shares(t.advertisements);
    await this.o.link().submitShares(t, shares);
    this.o.log.info({ round: t.round, attempt: t.attempt, phase: 'shares', shares: shares.length }, 'shares sent');
  }

  /** Consistency check: sign the survivor list, after checking it. */
  private async consistency(t: ConsistencyStage): Promise<void> {
    // The coordinator's unmask phase opens with this check, so a site told to drop "at unmask"
    // dies before it signs (docs/secure-aggregation.md, the phase table).
    this.o.fault('unmask');
    const signature = this.session(t).session.signSurvivors(t.survivors, t.dropped);
    await this.o.link().signSurvivors(t, this.o.site, signature);
  }

  /** Round 3: reveal shares, once, after t matching signatures. */
  private async unmask(t: UnmaskStage): Promise<void> {
    const shares = this.session(t).session.reveal(t.survivors, t.dropped, t.signatures);
    await this.o.link().revealShares(t, shares);
    this.o.log.info({ round: t.round, attempt: t.attempt, phase: 'unmask', shares: shares.length }, 'shares revealed');
    // The attempt's secrets have served their purpose (Bonawitz et al. 2017, round 3 is the last).
    this.cancel(t);
    this.o.onAttemptDone();
  }
}
