/**
 * Types of the round scheduler: the pure state machine that decides what a round does next.
 * No protobuf, socket, timer or file appears here; the shell in `coordinator/shell/` runs effects.
 */

/** Phase names, in round order. These lowercase names are the only phase names (DESIGN.md). */
export const PLAIN_PHASES = ['open', 'training', 'upload', 'aggregate', 'commit'] as const;
/** Secure-aggregation order: key agreement and share exchange come before training. */
export const SECURE_PHASES = ['open', 'keys', 'shares', 'training', 'upload', 'unmask', 'aggregate', 'commit'] as const;
export type PhaseName = (typeof SECURE_PHASES)[number];

/** How a site's contribution is weighted in the mean. */
export type Weighting = 'samples' | 'tokens' | 'uniform';

/** The parts of a run the scheduler needs; resolved and validated before it gets here. */
export interface RunPlan {
  readonly runId: string;
  /** Rounds to commit in total (round numbers 1..rounds). */
  readonly rounds: number;
  /** k of k-of-n: the fewest contributions that may complete a round. */
  readonly minSites: number;
  /** Sites the `open` phase waits for before its deadline; empty means "start at minSites". */
  readonly expectedSites: readonly string[];
  /** Per-phase deadlines, in milliseconds from the phase's start. */
  readonly deadlines: Readonly<Record<Exclude<PhaseName, 'keys' | 'shares' | 'unmask'>, number>> &
    Partial<Readonly<Record<'keys' | 'shares' | 'unmask', number>>>;
  /**
   * Secure aggregation (SecAgg+): rounds run `keys` and `shares` before training and `unmask`
   * after upload; `threshold` is the Shamir t. Undefined runs plain rounds.
   */
  readonly secure?: { readonly threshold: number } | undefined;
  /** Attempts of one round (an attempt ends in commit or abort) before the run fails. */
  readonly maxAttempts: number;
}

/** Where one invited site stands within the current attempt. */
export type SiteProgress =
  | { readonly status: 'invited' }
  | { readonly status: 'uploading' }
  | { readonly status: 'uploaded'; readonly weight: number }
  | { readonly status: 'dropped'; readonly reason: string };

/** Fields every in-round state carries. */
interface InRound {
  readonly plan: RunPlan;
  readonly round: number;
  readonly attempt: number;
  /** Absolute deadline (ms since epoch) of the current phase. */
  readonly deadline: number;
}

export interface IdleState {
  readonly phase: 'idle';
}
export interface OpenState extends InRound {
  readonly phase: 'open';
}
/** Where a site stands in a secure attempt's key or share exchange. */
export type ExchangeProgress = 'waiting' | 'done' | 'dropped';
/** Bonawitz et al. 2017 round 0: sites advertise their signed public keys. */
export interface KeysState extends InRound {
  readonly phase: 'keys';
  readonly exchange: Readonly<Record<string, ExchangeProgress>>;
}
/** Bonawitz et al. 2017 round 1: sites exchange encrypted Shamir shares. */
export interface SharesState extends InRound {
  readonly phase: 'shares';
  readonly exchange: Readonly<Record<string, ExchangeProgress>>;
}
/** Bonawitz et al. 2017 consistency check and round 3: survivors sign the list, then reveal shares. */
export interface UnmaskState extends InRound {
  readonly phase: 'unmask';
  readonly step: 'consistency' | 'reveal';
  readonly participants: readonly Contribution[];
  /** Share holders whose masked input is not in the sum. */
  readonly dropped: readonly string[];
  /** Every site dropped from the attempt, for the record (share holders and earlier losses). */
  readonly recordDropped: readonly string[];
  /** Survivors that signed the list / revealed their shares, and those that went away. */
  readonly signed: readonly string[];
  readonly revealed: readonly string[];
  readonly gone: readonly string[];
}
export interface TrainingState extends InRound {
  readonly phase: 'training';
  readonly roster: Readonly<Record<string, SiteProgress>>;
  /** Secure rounds: sites lost during `keys` or `shares` (not share holders), for the record. */
  readonly earlyDropped?: readonly string[];
}
export interface UploadState extends InRound {
  readonly phase: 'upload';
  readonly roster: Readonly<Record<string, SiteProgress>>;
  readonly earlyDropped?: readonly string[];
}
/** A contribution that made it into the sum. */
export interface Contribution {
  readonly site: string;
  readonly weight: number;
}
export interface AggregateState extends InRound {
  readonly phase: 'aggregate';
  readonly participants: readonly Contribution[];
  readonly dropped: readonly string[];
}
export interface CommitState extends InRound {
  readonly phase: 'commit';
  readonly participants: readonly Contribution[];
  readonly dropped: readonly string[];
  readonly modelSha256: string;
}
export interface FinishedState {
  readonly phase: 'finished';
  readonly plan: RunPlan;
}
export interface FailedState {
  readonly phase: 'failed';
  readonly plan: RunPlan;
  readonly reason: string;
}

export type RunState =
  | IdleState
  | OpenState
  | KeysState
  | SharesState
  | TrainingState
  | UploadState
  | UnmaskState
  | AggregateState
  | CommitState
  | FinishedState
  | FailedState;

/** Whole scheduler state: the run, which sites are connected right now, and which are excused. */
export interface SchedulerState {
  readonly connected: readonly string[];
  /**
   * Sites the `open` phase does not wait for even when the plan expects them (sorted): the shell
   * excuses a site that cannot connect, such as a revoked one, and lifts that when it can again.
   */
  readonly excused: readonly string[];
  readonly run: RunState;
}

export type SchedulerEvent =
  | { readonly type: 'runStarted'; readonly plan: RunPlan; readonly round: number; readonly attempt: number }
  | { readonly type: 'siteConnected'; readonly site: string }
  | { readonly type: 'siteDisconnected'; readonly site: string }
  /** `site` stops (`excused`) or starts again being waited for by `open`; valid in every phase. */
  | { readonly type: 'siteExcused'; readonly site: string; readonly excused: boolean }
  | { readonly type: 'uploadStarted'; readonly site: string; readonly round: number; readonly attempt: number }
  | {
      readonly type: 'uploadCompleted';
      readonly site: string;
      readonly round: number;
      readonly attempt: number;
      readonly weight: number;
    }
  | {
      readonly type: 'siteFailed';
      readonly site: string;
      readonly round: number;
      readonly attempt: number;
      readonly reason: string;
    }
  | { readonly type: 'deadline'; readonly round: number; readonly attempt: number; readonly phase: PhaseName }
  | { readonly type: 'aggregated'; readonly round: number; readonly attempt: number; readonly modelSha256: string }
  | { readonly type: 'aggregationFailed'; readonly round: number; readonly attempt: number; readonly reason: string }
  | { readonly type: 'committed'; readonly round: number; readonly attempt: number }
  | { readonly type: 'abortRequested'; readonly reason: string }
  | { readonly type: 'keysAdvertised'; readonly site: string; readonly round: number; readonly attempt: number }
  | { readonly type: 'sharesSubmitted'; readonly site: string; readonly round: number; readonly attempt: number }
  | { readonly type: 'survivorsSigned'; readonly site: string; readonly round: number; readonly attempt: number }
  | { readonly type: 'sharesRevealed'; readonly site: string; readonly round: number; readonly attempt: number };

export type SchedulerEventType = SchedulerEvent['type'];

/** Work the shell must do after a step; the scheduler never does I/O itself. */
export type Effect =
  | { readonly type: 'phaseEntered'; readonly round: number; readonly attempt: number; readonly phase: PhaseName; readonly deadline: number }
  | { readonly type: 'armDeadline'; readonly round: number; readonly attempt: number; readonly phase: PhaseName; readonly at: number }
  | { readonly type: 'recordRoundOpened'; readonly round: number; readonly attempt: number }
  | { readonly type: 'sendTrainTasks'; readonly round: number; readonly attempt: number; readonly sites: readonly string[] }
  | { readonly type: 'sendKeysTasks'; readonly round: number; readonly attempt: number; readonly sites: readonly string[] }
  | { readonly type: 'sendSharesTasks'; readonly round: number; readonly attempt: number; readonly sites: readonly string[] }
  | {
      readonly type: 'requestConsistency';
      readonly round: number;
      readonly attempt: number;
      readonly survivors: readonly string[];
      readonly dropped: readonly string[];
    }
  | {
      readonly type: 'requestUnmask';
      readonly round: number;
      readonly attempt: number;
      readonly sites: readonly string[];
      readonly survivors: readonly string[];
      readonly dropped: readonly string[];
    }
  | {
      readonly type: 'cancelSites';
      readonly round: number;
      readonly attempt: number;
      readonly sites: readonly string[];
      readonly reason: string;
    }
  | {
      readonly type: 'startAggregation';
      readonly round: number;
      readonly attempt: number;
      readonly participants: readonly Contribution[];
      /** Secure rounds: share holders whose pairwise masks must be removed. */
      readonly dropped: readonly string[];
    }
  | {
      readonly type: 'commitRound';
      readonly round: number;
      readonly attempt: number;
      readonly participants: readonly Contribution[];
      readonly dropped: readonly string[];
      readonly modelSha256: string;
    }
  | { readonly type: 'recordRoundAborted'; readonly round: number; readonly attempt: number; readonly reason: string }
  | { readonly type: 'runFinished'; readonly rounds: number }
  | { readonly type: 'runFailed'; readonly reason: string };

/** Why an event was not accepted in the current state. */
export const REFUSAL_CODES = {
  /** The event makes no sense in this phase (a bug or a misbehaving site). */
  invalidInPhase: 'INVALID_IN_PHASE',
  /** The event names another round, attempt or phase than the current one (late, harmless). */
  stale: 'STALE',
  /** The event names a site that is not part of the current attempt. */
  notInvited: 'NOT_INVITED',
  /** The event is for a state change that already happened (a site uploading twice). */
  duplicate: 'DUPLICATE',
} as const;
export type RefusalCode = (typeof REFUSAL_CODES)[keyof typeof REFUSAL_CODES];

export interface Refusal {
  readonly code: RefusalCode;
  readonly phase: RunState['phase'];
  readonly event: SchedulerEventType;
  readonly message: string;
}

export type StepResult =
  | { readonly ok: true; readonly state: SchedulerState; readonly effects: readonly Effect[] }
  | { readonly ok: false; readonly refusal: Refusal };
