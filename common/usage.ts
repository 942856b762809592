/**
 * A site's declaration of the compute one round cost it: allocated GPU time and the part of it
 * spent training, signed into its receipt of the round (common/receipt.ts) so whoever runs the
 * coordinator cannot change it. Shared by the agent, which measures and signs, and the coordinator
 * and auditors, which check, journal and sum: one definition, here.
 *
 * Times are integer GPU-milliseconds (GPUs × wall ms), so the signed bytes hold no float formatting.
 * Waiting = allocated − training: GPU time the allocation held without a training step running
 * (queue wait is not allocated time; a job's wait for the model, model I/O and the sync are).
 */
import type { RoundUsage__Output as RoundUsageWire } from '../proto/index.js';

/**
 * Where the figures come from: `slurm-sacct` — Slurm's accounting of the round's job(s) (elapsed ×
 * allocated `gres/gpu`); `wall-clock` — the runner's own clock × the GPUs its configuration names
 * (the command, builtin and stand-in runners; a label, not a scheduler's word); `unknown` — not
 * measurable, with the reason (never reported as 0).
 */
export const USAGE_SOURCES = ['slurm-sacct', 'wall-clock', 'unknown'] as const;
export type UsageSource = (typeof USAGE_SOURCES)[number];

export interface RoundUsage {
  readonly source: UsageSource;
  /** GPUs allocated (the most any of the round's allocations held); 0 when unknown. */
  readonly gpus: number;
  /** Allocated wall time attributed to this round, ms (summed over its allocations). */
  readonly wallMs: number;
  /** Σ allocation wall ms × its GPUs. */
  readonly allocatedGpuMs: number;
  /** The part of `allocatedGpuMs` between the first and last training step (the busy span × GPUs). */
  readonly trainingGpuMs: number;
  /** The scheduler's job ids behind the figures, comma-separated (`123,124`); empty for wall-clock. */
  readonly jobs: string;
  /** Why the usage is unknown; empty when it is known. */
  readonly reason: string;
}

/** Longest `reason`; a longer one is cut (with an ellipsis) before signing. */
export const USAGE_REASON_MAX = 512;
/** Most GPUs one round may declare (a bound on nonsense, far above any allocation). */
export const USAGE_GPUS_MAX = 1_000_000;

const JOBS = /^(?:[0-9A-Za-z_.+-]+(?:,[0-9A-Za-z_.+-]+)*)?$/;
const REASON = /^[\x20-\x7e]*$/;

/**
 * Why `u` is not a usage a site may sign, or undefined when it is. Known usage: non-negative safe
 * integers, training ≤ allocated, no reason; unknown usage: every figure 0, no jobs, a reason.
 */
export function usageProblem(u: RoundUsage): string | undefined {
  if (!(USAGE_SOURCES as readonly string[]).includes(u.source)) return `usage source ${JSON.stringify(u.source)} is not one of ${USAGE_SOURCES.join(', ')}`;
  for (const k of ['gpus', 'wallMs', 'allocatedGpuMs', 'trainingGpuMs'] as const) {
    if (!Number.isSafeInteger(u[k]) || u[k] < 0) return `usage ${k} must be a non-negative integer, got ${u[k]}`;
  }
  if (u.gpus > USAGE_GPUS_MAX) return `usage gpus ${u.gpus} is above ${USAGE_GPUS_MAX}`;
  if (!JOBS.test(u.jobs)) return 'usage jobs must be comma-separated job ids (letters, digits, _ . + -)';
  if (!REASON.test(u.reason) || u.reason.length > USAGE_REASON_MAX) return `usage reason must be printable ASCII of at most ${USAGE_REASON_MAX} characters`;
  if (u.source === 'unknown') {
    if (u.reason.trim() === '') return 'unknown usage must say why';
    if (u.gpus !== 0 || u.wallMs !== 0 || u.allocatedGpuMs !== 0 || u.trainingGpuMs !== 0 || u.jobs !== '') return 'unknown usage carries no figures';
    return undefined;
  }
  if (u.reason !== '') return 'known usage carries no reason';
  if (u.trainingGpuMs > u.allocatedGpuMs) return `usage trainingGpuMs ${u.trainingGpuMs} is above allocatedGpuMs ${u.allocatedGpuMs}`;
  if (u.allocatedGpuMs > u.wallMs * Math.max(u.gpus, 0)) return `usage allocatedGpuMs ${u.allocatedGpuMs} is above wallMs × gpus (${u.wallMs} × ${u.gpus})`;
  return undefined;
}

/** An unknown usage with `reason` made printable and cut to {@link USAGE_REASON_MAX}. */
export function unknownUsage(reason: string): RoundUsage {
  let r = reason.replace(/[^\x20-\x7e]+/g, ' ').trim() || 'not measured';
  if (r.length > USAGE_REASON_MAX) r = `${r.slice(0, USAGE_REASON_MAX - 3)}...`;
  return { source: 'unknown', gpus: 0, wallMs: 0, allocatedGpuMs: 0, trainingGpuMs: 0, jobs: '', reason: r };
}

/** GPU-hours of GPU-milliseconds. */
export function gpuHours(gpuMs: number): number {
  return gpuMs / 3_600_000;
}

/** A usage as the wire carries it (`RoundUsage`: receipts and `admin usage`). */
export function usageToWire(u: RoundUsage): RoundUsageWire {
  return { source: u.source, gpus: u.gpus, wallMs: String(u.wallMs), allocatedGpuMs: String(u.allocatedGpuMs), trainingGpuMs: String(u.trainingGpuMs), jobs: u.jobs, reason: u.reason };
}
