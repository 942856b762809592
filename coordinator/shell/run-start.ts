/**
 * Starting (or resuming) a run for the driver: the journal records that start or extend it, and
 * the `RunContext` its rounds are driven from.
 */
import { createOptimizer, invariant, partitionModel, type ModelPartition } from '../../aggregation/index.js';
import { auditedConfig } from '../audit/config.js';
import type { ResolvedCoordinatorConfig, RunningConfig } from '../config.js';
import { CoordinatorError } from '../core/errors.js';
import { CHECKPOINT_DTYPES } from '../state/checkpoint-dtype.js';
import { importInitialModel } from '../state/model-import.js';
import { runPlanFromConfig } from './plan.js';
import { recoverRun, type RecoveredRun } from '../state/recovery.js';
import type { JournalRecord } from '../state/journal.js';
import { activeRunAtStart } from './run-control.js';
import { matchJournaledRun, type RunResumption } from './run-match.js';
import { describeModel } from './commit.js';
import type { RunContext } from './context.js';
import type { RunPlan } from '../round/types.js';
import { recordsOf } from '../state/records.js';
import type { StateStore } from '../state/store.js';
import { RunBases } from '../upload/bases.js';
import type { LayoutTensor } from '../upload/header.js';

/**
 * Refuses (`RUN_CONFIG_MISMATCH`) a coordinator whose run, the one it would drive after a (re)start
 * on `records`, differs from the run the journal started under its id (run-match.ts). Checked before
 * the coordinator appends anything, and by a standby on the journal it follows. A run an admin
 * started is the journal's own run file, and an aborted or never started run resumes nothing: those pass.
 */
export function checkConfiguredRun(records: readonly JournalRecord[], config: Pick<ResolvedCoordinatorConfig, 'run'>): void {
  const active = activeRunAtStart(records, config.run);
  if (!active || active.aborted) return;
  const recovered = recoverRun(records, active.run.id);
  if (recovered) resumptionOf(recovered, active.run);
}

/** How `run` resumes `recovered`, or the `RUN_CONFIG_MISMATCH` that names every differing field. */
function resumptionOf(recovered: RecoveredRun, run: RunningConfig['run']): RunResumption {
  const match = matchJournaledRun(recovered, run);
  if (match.ok) return match.value;
  throw new CoordinatorError(
    'RUN_CONFIG_MISMATCH',
    `run ${run.id}: the configured run differs from the run the journal started: ${match.issues.join('; ')}. ` +
      'A restart or a takeover resumes the journal\'s run and may only add rounds: configure it as journaled, or give the changed run a new run.id',
    { runId: run.id, fields: String(match.context['fields']) },
  );
}

/**
 * The run of `config` as the journal has it, once journaled: a run never started is started
 * (its initial model imported), one configured with more rounds than it had is extended, and one
 * configured otherwise than the journal says is refused (`RUN_CONFIG_MISMATCH`, nothing appended).
 */
export async function journalRunStart(store: StateStore, config: RunningConfig): Promise<RecoveredRun> {
  const cfg = config.run;
  const recovered = recoverRun(store.records(), cfg.id);
  if (!recovered) {
    const dtype = cfg.checkpointDtype;
    const initial = await importInitialModel(store, config.model.initial, config.limits.sliceElements, dtype && CHECKPOINT_DTYPES[dtype]);
    await store.append({
      type: 'run-started',
      runId: cfg.id,
      plan: runPlanFromConfig(config),
      strategy: cfg.strategy,
      weighting: cfg.weighting,
      encoding: cfg.encoding,
      train: cfg.train,
      initialModelSha256: initial.sha256,
      ...(dtype ? { checkpointDtype: dtype } : {}),
      config: auditedConfig(config),
    });
    const started = recoverRun(store.records(), cfg.id);
    invariant(started !== undefined, 'a run just journaled as started is recovered from the journal');
    return started;
  }
  const resumption = resumptionOf(recovered, cfg);
  if (resumption.kind === 'extend') {
    await store.append({ type: 'run-extended', runId: cfg.id, rounds: resumption.rounds });
    const extended = recoverRun(store.records(), cfg.id);
    invariant(extended !== undefined, 'a run just journaled as extended is recovered from the journal');
    return extended;
  }
  return recovered;
}

/**
 * The context a recovered run is driven from: `plan`, a fresh optimizer, its global model's layout,
 * and its partition over `shardNames` (journaled when it changes, {@link journalPartition}).
 */
export async function runContextOf(store: StateStore, recovered: RecoveredRun, plan: RunPlan, shardNames: readonly string[] = []): Promise<RunContext> {
  const model = await describeModel(store, recovered.globalSha256);
  return {
    plan,
    optimizer: createOptimizer(recovered.started.strategy),
    globalSha256: recovered.globalSha256,
    globalBytes: model.bytes,
    modelRound: recovered.nextRound - 1,
    stateSha256: recovered.stateSha256,
    serverSteps: recovered.serverSteps,
    tensors: model.tensors,
    bases: new RunBases(recovered.started.initialModelSha256, recovered.committed),
    shards: await journalPartition(store, plan.runId, recovered.nextRound, shardNames, model.tensors),
  };
}

/** The run's partition over its shards as journaled, or why there is none. */
export interface RunPartition {
  readonly partition: ModelPartition | undefined;
  /** Why shards that are configured do not get parts ('' when they do, or none are configured). */
  readonly problem: string;
}

/**
 * Journals how the run's model is cut over the configured aggregator shards (`names`, in shard
 * order) from `fromRound` on, unless the run's last `shards-partitioned` record says the same
 * already; a run that had shards and now aggregates alone journals that too (empty `shards`): no
 * shards configured, or a model that cannot be cut into that many parts (then it says why).
 */
export async function journalPartition(store: StateStore, runId: string, fromRound: number, names: readonly string[], tensors: readonly LayoutTensor[]): Promise<RunPartition> {
  const last = recordsOf(store.records().map((r) => r.body), runId, 'shards-partitioned').at(-1);
  const alone = async (problem: string): Promise<RunPartition> => {
    if (last !== undefined && last.shards.length > 0) await store.append({ type: 'shards-partitioned', runId, fromRound, shards: [], alignValues: last.alignValues, bounds: [] });
    return { partition: undefined, problem };
  };
  if (names.length === 0) return alone('');
  const cut = partitionModel(tensors, names.length);
  if (!cut.ok) return alone(`the model cannot be cut into ${names.length} shards: ${cut.issues.join('; ')}`);
  const p = cut.value;
  const same = last !== undefined && last.alignValues === p.alignValues && sameList(last.shards, names) && sameList(last.bounds, p.bounds);
  if (!same) await store.append({ type: 'shards-partitioned', runId, fromRound, shards: [...names], alignValues: p.alignValues, bounds: [...p.bounds] });
  return { partition: p, problem: '' };
}

function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
