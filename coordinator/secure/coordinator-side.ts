/**
 * Secure aggregation at the coordinator, as middleware around the round driver: it runs the
 * scheduler's secure effects (keys, shares, consistency, unmask tasks), checks the sites' stage
 * messages and turns them into scheduler events, and supplies the unmasked mean at `aggregate`.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FileSource } from '../../common/files.js';
import type { Logger } from '../../common/logger.js';
import type { MeanSource } from '../aggregate/checkpoint-writer.js';
import type { RunningConfig } from '../config.js';
import { CoordinatorError } from '../core/errors.js';
import type { SiteRegistry } from '../sites/registry.js';
import type { RunState, SchedulerEvent, StepResult } from '../round/types.js';
import type { AttemptRef, SecureStageHandlers } from './messages.js';
import { SecureRound, type SecureStage, type StoredShare } from './round.js';
import { type SecureMeanOptions, checkedUnmaskingOfWords, secureMean } from './unmask.js';

export interface SecureSideOptions {
  readonly config: RunningConfig;
  readonly registry: SiteRegistry;
  readonly logger: Logger;
  readonly dispatch: (event: SchedulerEvent) => StepResult;
  /** The scheduler's run state now: the secure stage open for messages is read from it. */
  readonly phase: () => RunState;
  /** Threshold t of the run (also in the scheduler's plan). */
  readonly threshold: number;
}

/** The stage whose messages the scheduler's `run` accepts. */
export function secureStageOf(run: RunState): SecureStage {
  if (run.phase === 'keys' || run.phase === 'shares') return run.phase;
  if (run.phase === 'unmask') return run.step;
  return 'closed';
}

/** Stage handlers of a run without secure aggregation: every stage message is refused. */
export function refuseSecureStages(): SecureStageHandlers {
  const refuse = (): never => {
    throw new CoordinatorError('ROUND_CLOSED', 'this run does not use secure aggregation: no key, share or unmask stage is open');
  };
  return { advertise: refuse, submitShares: refuse, signSurvivors: refuse, revealShares: refuse };
}

/** The secure-aggregation side of one coordinator. */
export class SecureSide {
  private current: SecureRound | undefined;
  private readonly caPem: string;

  constructor(private readonly o: SecureSideOptions) {
    this.caPem = readFileSync(o.config.tls.ca, 'utf8');
  }

  /** Wire encoding of masked uploads. */
  get encoding(): 'secagg32' | 'secagg16' {
    return this.o.config.run.secureAggregation.modulusBits === 32 ? 'secagg32' : 'secagg16';
  }

  /** Round 0: a fresh attempt with fresh parameters; every invited site makes new keys. */
  sendKeys(runId: string, round: number, attempt: number, sites: readonly string[]): void {
    const sa = this.o.config.run.secureAggregation;
    const params = {
      threshold: this.o.threshold,
      quantBits: sa.quantBits,
      modulusBits: sa.modulusBits,
      clip: sa.clip,
      maxSiteWeight: this.o.config.run.maxSiteWeight,
      weighting: this.o.config.run.weighting,
      graphSeed: randomBytes(32),
      degree: sa.degree,
      roster: [...sites].sort(),
    };
    this.current = new SecureRound({ runId, round, attempt, params, caPem: this.caPem, stage: () => secureStageOf(this.o.phase()) });
    for (const site of sites) this.send(site, { kind: 'keys', runId, round, attempt, params: this.current.params });
  }

  /** Round 1: every site that advertised gets all advertisements (it picks its neighbours). */
  sendShares(round: number, attempt: number, sites: readonly string[]): void {
    const r = this.round(round, attempt);
    // The graph is built over exactly U1: an advertisement that arrived after the scheduler moved on is dropped.
    for (const site of [...r.adverts.keys()]) if (!sites.includes(site)) r.adverts.delete(site);
    const adverts = sites.map((s) => r.adverts.get(s)!).filter(Boolean);
    for (const site of sites) this.send(site, { kind: 'shares', runId: r.runId, round, attempt, adverts });
  }

  /** Training: the share holders are fixed; each site receives the shares sealed for it. */
  trainExtras(round: number, attempt: number, site: string, holders: readonly string[]): { shares: StoredShare[]; shareHolders: string[] } {
    const r = this.round(round, attempt);
    r.holders = [...holders].sort();
    return { shares: r.sharesFor(site), shareHolders: [...r.holders] };
  }

  /** Consistency check: survivors are asked to sign the list. */
  sendConsistency(round: number, attempt: number, survivors: readonly string[], dropped: readonly string[]): void {
    const r = this.round(round, attempt);
    r.survivors = [...survivors].sort();
    r.dropped = [...dropped].sort();
    for (const site of survivors) this.send(site, { kind: 'consistency', runId: r.runId, round, attempt, survivors: r.survivors, dropped: r.dropped, signatures: [] });
  }

  /** Round 3: signers receive every signature and reveal their shares. */
  sendUnmask(round: number, attempt: number, sites: readonly string[]): void {
    const r = this.round(round, attempt);
    const signatures = [...r.signatures.entries()].map(([site, signature]) => ({ site, signature }));
    for (const site of sites) this.send(site, { kind: 'unmask', runId: r.runId, round, attempt, survivors: r.survivors, dropped: r.dropped, signatures });
  }

  /**
   * The unmasked mean of the survivors' masked spools, checked against the counts each survivor
   * declared in its upload header (`declared`, by site; see unmask.ts).
   */
  mean(
    round: number,
    attempt: number,
    spools: readonly string[],
    declared: ReadonlyMap<string, number>,
    elements: number,
    open: (p: string) => Promise<FileSource>,
    options: SecureMeanOptions = {},
  ): Promise<MeanSource> {
    const r = this.round(round, attempt);
    return secureMean(r, spools, declared, elements, open, options);
  }

  /**
   * What aggregator shards need to unmask their ranges of this attempt's sum (issue 22): the plan,
   * and Σw from the survivors' masked weight words, in survivor order (unmask.ts `checkedUnmaskingOfWords`).
   */
  shardUnmask(round: number, attempt: number, words: readonly Uint8Array[], declared: ReadonlyMap<string, number>, elements: number): ReturnType<typeof checkedUnmaskingOfWords> {
    return checkedUnmaskingOfWords(this.round(round, attempt), words, declared, elements);
  }

  /** Stage RPC handlers for one calling site; each validates, then tells the scheduler. */
  handlers(site: string): SecureStageHandlers {
    const accept = (type: 'keysAdvertised' | 'sharesSubmitted' | 'survivorsSigned' | 'sharesRevealed', m: AttemptRef): Record<string, never> => {
      const r = this.o.dispatch({ type, site, round: m.round, attempt: m.attempt });
      if (!r.ok) throw new CoordinatorError('ROUND_CLOSED', `${type} refused: ${r.refusal.message}`);
      return {};
    };
    const open = (): SecureRound => {
      if (!this.current) throw new CoordinatorError('ROUND_CLOSED', 'no secure round is open');
      return this.current;
    };
    return {
      advertise: (m) => (open().advertise(site, m), accept('keysAdvertised', m)),
      submitShares: (m) => (open().submitShares(site, m), accept('sharesSubmitted', m)),
      signSurvivors: (m) => (open().signSurvivors(site, m), accept('survivorsSigned', m)),
      revealShares: (m) => (open().revealShares(site, m), accept('sharesRevealed', m)),
    };
  }

  private round(round: number, attempt: number): SecureRound {
    const r = this.current;
    if (!r || r.round !== round || r.attempt !== attempt) throw new CoordinatorError('INTERNAL', `no secure state for round ${round}.${attempt}`);
    return r;
  }

  private send(site: string, task: Parameters<SiteRegistry['send']>[1]): void {
    if (!this.o.registry.send(site, task)) this.o.logger.warn({ site, task: task.kind }, 'site has no open task stream');
  }
}
