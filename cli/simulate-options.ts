/**
 * `fedhpc simulate`'s options for sites of unequal speed (issue 16): `--site-speeds` and
 * `--budget-s`, checked against each other and the other options; and for a standby coordinator
 * pair (issue 19): `--coordinators`, `--nats-cluster`, `--kill-leader-at`. Every mistake is a
 * {@link UsageError} (exit 2) that names the option.
 */
import { CRASH_POINTS, type CrashPoint } from '../coordinator/index.js';
import type { LeaderChange, PairOptions, PairSummary } from '../simulate/index.js';
import { UsageError } from './usage-error.js';

/** Runners `simulate` can start. */
export const SIMULATE_RUNNERS = ['builtin', 'standin', 'command', 'slurm'] as const;
export type SimulateRunner = (typeof SIMULATE_RUNNERS)[number];

/** The longest time budget a simulated round may have. */
const MAX_BUDGET_S = 3600;

/** What the speed and budget options resolve to. */
export interface SpeedOptions {
  readonly sites: number;
  readonly runner: SimulateRunner;
  readonly siteSpeeds: readonly number[] | undefined;
  readonly budgetS: number | undefined;
  /** Overlapped rounds: persistent trainers that train on through each sync (`--overlap`). */
  readonly overlap: boolean;
}

/** A strictly positive, finite decimal number, or undefined. */
function positive(text: string): number | undefined {
  const n = /^\s*(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/.test(text) ? Number(text) : NaN;
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/**
 * Resolves `--sites`, `--runner`, `--site-speeds` and `--budget-s`. `--site-speeds 1,2,3` gives
 * each site's relative speed (positive numbers, one per site; `--sites` defaults to their count)
 * and selects the stand-in trainer; `--budget-s S` gives every round a time budget of S seconds
 * (0 < S ≤ 3600), with the builtin or the stand-in trainer.
 */
export function speedOptions(v: {
  sites: number | undefined;
  runner: string | undefined;
  siteSpeeds: string | undefined;
  budgetS: string | undefined;
  overlap?: boolean | undefined;
  fragments?: string | undefined;
}): SpeedOptions {
  if (v.runner !== undefined && !(SIMULATE_RUNNERS as readonly string[]).includes(v.runner)) {
    throw new UsageError(`--runner must be one of ${SIMULATE_RUNNERS.join(', ')}, got ${JSON.stringify(v.runner)}`);
  }
  let siteSpeeds: number[] | undefined;
  if (v.siteSpeeds !== undefined) {
    const parts = v.siteSpeeds.split(',');
    siteSpeeds = parts.map((p) => {
      const n = positive(p);
      if (n === undefined) throw new UsageError(`--site-speeds must be positive numbers separated by commas (e.g. 1,2,3), got ${JSON.stringify(p)} in ${JSON.stringify(v.siteSpeeds)}`);
      return n;
    });
    if (v.sites !== undefined && siteSpeeds.length !== v.sites) {
      throw new UsageError(`--site-speeds gives ${siteSpeeds.length} speeds for --sites ${v.sites}: give one speed per site`);
    }
    if (v.runner !== undefined && v.runner !== 'standin') {
      throw new UsageError(`--site-speeds sets the speeds of stand-in trainers (--runner standin), not of --runner ${v.runner}`);
    }
  }
  const runner = (v.runner ?? (siteSpeeds ? 'standin' : 'builtin')) as SimulateRunner;
  let budgetS: number | undefined;
  if (v.budgetS !== undefined) {
    budgetS = positive(v.budgetS);
    if (budgetS === undefined || budgetS > MAX_BUDGET_S) throw new UsageError(`--budget-s must be a number of seconds above 0 and at most ${MAX_BUDGET_S}, got ${JSON.stringify(v.budgetS)}`);
    if (runner !== 'builtin' && runner !== 'standin') {
      throw new UsageError(`--budget-s works with the builtin and stand-in trainers, not --runner ${runner} (its speed, so the weight a site may declare, is not known here)`);
    }
  }
  if (v.fragments !== undefined) {
    throw new UsageError(`--fragments ${v.fragments}: fragment-wise syncs (Streaming DiLoCo's P staggered fragments) are not built; --overlap syncs the whole model a round late (docs/decisions.md)`);
  }
  const overlap = v.overlap === true;
  if (overlap && runner !== 'standin') throw new UsageError(`--overlap needs persistent trainers: the stand-in trainer (--runner standin or --site-speeds), not --runner ${runner}`);
  if (overlap && budgetS === undefined) throw new UsageError('--overlap needs --budget-s: the budget is the training each sync carries');
  return { sites: v.sites ?? siteSpeeds?.length ?? 4, runner, siteSpeeds, budgetS, overlap };
}

/** The round phases `--kill-leader-at` can name: those with a kill point on entering them. */
export const KILL_LEADER_PHASES = CRASH_POINTS.filter((p) => p.startsWith('phase.')).map((p) => p.slice('phase.'.length));


/**
 * Resolves `--coordinators N` (1, the default, or 2: a standby pair), `--nats-cluster N` (3, and
 * only with a pair) and `--kill-leader-at PHASE` (only with a pair). A pair runs as local processes,
 * not with `--containers`. Undefined: one coordinator, as before.
 */
export function pairOptions(v: { coordinators: string | undefined; natsCluster: string | undefined; killLeaderAt: string | undefined; containers: boolean }): PairOptions | undefined {
  if (v.coordinators !== undefined && v.coordinators !== '1' && v.coordinators !== '2') {
    throw new UsageError(`--coordinators must be 1 or 2 (a leader and its standby), got ${JSON.stringify(v.coordinators)}`);
  }
  const pair = v.coordinators === '2';
  if (v.natsCluster !== undefined) {
    if (v.natsCluster !== '3') throw new UsageError(`--nats-cluster must be 3: a pair's lease and journal need a quorum that outlives one NATS node, got ${JSON.stringify(v.natsCluster)}`);
    if (!pair) throw new UsageError('--nats-cluster runs the cluster a standby pair needs: give it with --coordinators 2');
  }
  if (v.killLeaderAt !== undefined) {
    if (!pair) throw new UsageError('--kill-leader-at kills the leader of a standby pair: give it with --coordinators 2');
    if (!KILL_LEADER_PHASES.includes(v.killLeaderAt)) throw new UsageError(`--kill-leader-at must be one of ${KILL_LEADER_PHASES.join(', ')}, got ${JSON.stringify(v.killLeaderAt)}`);
  }
  if (!pair) return undefined;
  if (v.containers) throw new UsageError('--coordinators 2 runs the pair as local processes, not with --containers');
  return { natsNodes: 3, killLeaderAt: v.killLeaderAt === undefined ? undefined : (`phase.${v.killLeaderAt}` as CrashPoint) };
}

/** A leader line: who leads under which term, and after a kill, when and how long the takeover took. */
export function leaderText(r: LeaderChange): string {
  if (r.previous === undefined) return `leader: ${r.holder} (term ${r.term})`;
  const where = `${r.killedAt?.replace(/^phase\./, '') ?? 'a kill'}${r.round !== undefined ? ` of round ${r.round}` : ''}`;
  return `leader: ${r.holder} took over (term ${r.term}) ${r.failoverS?.toFixed(1) ?? '?'} s after ${r.previous} was SIGKILLed at ${where} (lease TTL ${r.leaseTtlS} s); ${r.previous} restarts as the standby`;
}

/** The pair's summary line, from the replicated journal. */
export function pairSummaryText(h: PairSummary): string {
  const repeated = h.roundsRepeated === 0 ? 'none repeated' : `${h.roundsRepeated} REPEATED`;
  const lost = h.committedRoundsLost === 0 ? 'none lost' : `${h.committedRoundsLost} LOST`;
  return (
    `pair: ${h.leaderChanges} leader change${h.leaderChanges === 1 ? '' : 's'}${h.failoverS !== undefined ? `, failover ${h.failoverS.toFixed(1)} s` : ''}; ` +
    `the replicated journal commits rounds ${h.committedRounds.join(',') || 'none'}: ${lost}, ${repeated}` +
    (h.bytesReused > 0 ? `; ${h.bytesReused} upload bytes carried over from the interrupted attempt` : '')
  );
}
