/** The scheduler's view of a run, derived once from the coordinator config and journaled. */
import { secureThreshold, type RunningConfig } from '../config.js';
import type { RunPlan } from '../round/types.js';

/** k-of-n, deadlines in milliseconds, attempts and the secure-aggregation threshold of a run. */
export function runPlanFromConfig(config: Pick<RunningConfig, 'run'>): RunPlan {
  const r = config.run;
  const d = r.deadlines;
  const sa = r.secureAggregation;
  return {
    ...(sa.enabled ? { secure: { threshold: secureThreshold(r) } } : {}),
    runId: r.id,
    rounds: r.rounds,
    minSites: r.minSites,
    expectedSites: r.expectedSites,
    maxAttempts: r.maxAttempts,
    deadlines: {
      open: d.openS * 1000,
      training: d.trainingS * 1000,
      upload: d.uploadS * 1000,
      aggregate: d.aggregateS * 1000,
      commit: d.commitS * 1000,
      keys: d.keysS * 1000,
      shares: d.sharesS * 1000,
      unmask: d.unmaskS * 1000,
    },
  };
}
