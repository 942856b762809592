/**
 * What a round cost this site (issue 20): a runner says how its shard was allocated
 * ({@link Allocation}, plain data kept with the contribution), and when the round's receipt is
 * signed the allocation is measured into the {@link RoundUsage} the receipt carries.
 *
 * Slurm allocations are measured by Slurm's accounting (`sacct`, every run of each job): allocated
 * GPU time = elapsed × allocated `gres/gpu`. A persistent trainer's job spans many rounds and is
 * split by wall interval: round r owns the job's time between the snapshot of sync r−1 (or the
 * job's start) and the snapshot of sync r (or, for the run's final round, the job's end), so the
 * rounds' figures add up to the job's total. The training part is the trainer's busy span (first
 * to last step) × GPUs, never more than allocated. Without accounting the usage is `unknown` with
 * sacct's own words; it is never reported as 0.
 */
import { z } from 'zod';
import { unknownUsage, type RoundUsage } from '../common/usage.js';
import type { Run } from './runners/slurm-cli.js';

/** How a shard's compute was allocated, as its runner knows it. */
export type Allocation =
  /** The runner's own clock × the GPUs its configuration names (command, builtin, stand-in runners). */
  | { readonly kind: 'wall-clock'; readonly gpus: number; readonly startedMs: number; readonly endedMs: number; readonly busyMs: number }
  /** Slurm jobs that each ran one shard of this round (a requeued job counts every run). */
  | { readonly kind: 'slurm-jobs'; readonly jobs: readonly string[]; readonly busyMs: number }
  /**
   * A persistent trainer's Slurm job(s): the part of their allocations after `fromMs` (undefined:
   * from the start) up to `toMs` (the snapshot; the job's end when the round is the run's last).
   */
  | { readonly kind: 'slurm-session'; readonly jobs: readonly string[]; readonly fromMs?: number | undefined; readonly toMs: number; readonly busyMs: number }
  | { readonly kind: 'unknown'; readonly reason: string };

const ms = z.number().min(0).max(Number.MAX_SAFE_INTEGER);
const jobIds = z.array(z.string().regex(/^[0-9A-Za-z_.+-]+$/)).max(10_000);

/** An {@link Allocation} as kept work stores it on disk (site-agent/kept-work.ts). */
export const allocationSchema: z.ZodType<Allocation> = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('wall-clock'), gpus: z.number().int().min(0), startedMs: ms, endedMs: ms, busyMs: ms }).strict(),
  z.object({ kind: z.literal('slurm-jobs'), jobs: jobIds, busyMs: ms }).strict(),
  z.object({ kind: z.literal('slurm-session'), jobs: jobIds, fromMs: ms.optional(), toMs: ms, busyMs: ms }).strict(),
  z.object({ kind: z.literal('unknown'), reason: z.string().max(4096) }).strict(),
]);

/** The busy span of a shard's result (first step's start to last step's end), 0 when not known. */
export function busySpanMs(r: { readonly trainStartedMs?: number | undefined; readonly trainFinishedMs?: number | undefined }): number {
  const a = r.trainStartedMs ?? 0;
  const b = r.trainFinishedMs ?? 0;
  return a > 0 && b >= a ? b - a : 0;
}

/** The runner's clock × its configured GPUs; `unknown` when the site configured none (`runner.gpus`). */
export function wallClockAllocation(gpus: number | undefined, startedMs: number, endedMs: number, busyMs: number): Allocation {
  if (gpus === undefined) return { kind: 'unknown', reason: 'runner.gpus is not configured: the command runner cannot tell how many GPUs its trainer holds' };
  return { kind: 'wall-clock', gpus, startedMs, endedMs, busyMs };
}

/** One allocation of a job as sacct reports it (times in ms; `endMs` undefined while it runs). */
export interface AccountedRun {
  readonly jobId: string;
  readonly state: string;
  readonly gpus: number;
  readonly startMs: number;
  readonly endMs?: number | undefined;
  readonly elapsedMs: number;
}

/** The GPUs of an `AllocTRES` value (`cpu=2,gres/gpu=4,node=1`; typed `gres/gpu:a100=4` summed when no untyped entry). */
export function gpusOfTres(tres: string): number {
  let untyped: number | undefined;
  let typed = 0;
  for (const entry of tres.split(',')) {
    const m = /^gres\/gpu(?::[^=]+)?=(\d+)$/.exec(entry.trim());
    if (!m) continue;
    if (entry.trim().startsWith('gres/gpu=')) untyped = Number(m[1]);
    else typed += Number(m[1]);
  }
  return untyped ?? typed;
}

/**
 * Parses `sacct -n -P -X -D -o JobIDRaw,State,ElapsedRaw,AllocTRES,Start,End` with
 * `SLURM_TIME_FORMAT=%s`. A run not started (Start `Unknown`/`None`, a pending requeue) holds no
 * allocation and is left out; a running one has no end.
 */
export function parseAccounting(stdout: string): AccountedRun[] {
  const runs: AccountedRun[] = [];
  for (const line of stdout.split('\n')) {
    const f = line.trim().split('|');
    if (f.length < 6) continue;
    const [jobId, state, elapsed, tres, start, end] = f as [string, string, string, string, string, string];
    if (!/^\d+$/.test(start) || Number(start) === 0) continue;
    const startMs = Number(start) * 1000;
    const endMs = /^\d+$/.test(end) && Number(end) > 0 ? Number(end) * 1000 : undefined;
    runs.push({ jobId, state: state.split(/\s+/)[0] ?? state, gpus: gpusOfTres(tres), startMs, endMs, elapsedMs: (/^\d+$/.test(elapsed) ? Number(elapsed) : 0) * 1000 });
  }
  return runs;
}

/** What measuring needs: sacct, a clock and a sleep (injected for tests). */
export interface UsageMeterOptions {
  readonly accounting: (jobIds: readonly string[], signal: AbortSignal) => Promise<Run>;
  /** How long to wait for jobs that should have ended to show their end in sacct (its lag, a stopping job). */
  readonly settleMs?: number;
  readonly pollMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/** States in which a run still holds its allocation (a requeued run's record has ended: its next run is another line). */
const LIVE_STATES = new Set(['RUNNING', 'COMPLETING', 'CONFIGURING', 'SUSPENDED', 'PENDING', 'RESIZING', 'STAGE_OUT', 'SIGNALING']);
const ENDED = (r: AccountedRun): boolean => r.endMs !== undefined && !LIVE_STATES.has(r.state);

/** Measures allocations into receipts' usage. */
export class UsageMeter {
  constructor(private readonly o: UsageMeterOptions) {}

  /**
   * The usage of `allocation`; `final`: its round is the run's last (a persistent job's tail after
   * the last snapshot belongs to it). Never throws: what cannot be measured is `unknown`.
   */
  async measure(allocation: Allocation | undefined, final: boolean, signal: AbortSignal): Promise<RoundUsage> {
    if (allocation === undefined) return unknownUsage('the agent kept no allocation of this round (it restarted before the receipt, or the work was folded in from a missed round)');
    switch (allocation.kind) {
      case 'unknown':
        return unknownUsage(allocation.reason);
      case 'wall-clock': {
        const wallMs = Math.max(0, Math.round(allocation.endedMs - allocation.startedMs));
        return known('wall-clock', allocation.gpus, wallMs, wallMs * allocation.gpus, allocation.busyMs, '');
      }
      case 'slurm-jobs':
      case 'slurm-session':
        return this.measureSlurm(allocation, final, signal).catch((err: unknown) => unknownUsage(`sacct: ${(err as Error).message}`));
    }
  }

  /**
   * The usage of an upload: its fresh shard's allocation (`final` applies to it) and those of the
   * kept parts it folded, whose allocations ended rounds ago. Summed when every part is known by
   * the same source; one unknown part, or parts measured by different sources, make the round
   * unknown with the reason — a sum is never partly guessed.
   */
  async measureAll(fresh: Allocation | undefined, folded: readonly (Allocation | undefined)[], final: boolean, signal: AbortSignal): Promise<RoundUsage> {
    const own = await this.measure(fresh, final, signal);
    if (folded.length === 0) return own;
    const parts = [own, ...(await Promise.all(folded.map((a) => this.measure(a ?? { kind: 'unknown', reason: 'a kept part from before this agent recorded allocations' }, false, signal))))];
    const unknown = parts.findIndex((u) => u.source === 'unknown');
    if (unknown >= 0) return unknownUsage(unknown === 0 ? own.reason : `a folded part from an earlier round: ${parts[unknown]!.reason}`);
    const sources = [...new Set(parts.map((u) => u.source))];
    if (sources.length > 1) return unknownUsage(`the round's parts were measured by different sources (${sources.join(', ')}); not added up`);
    return {
      source: own.source,
      gpus: Math.max(...parts.map((u) => u.gpus)),
      wallMs: parts.reduce((s, u) => s + u.wallMs, 0),
      allocatedGpuMs: parts.reduce((s, u) => s + u.allocatedGpuMs, 0),
      trainingGpuMs: parts.reduce((s, u) => s + u.trainingGpuMs, 0),
      jobs: [...new Set(parts.flatMap((u) => (u.jobs === '' ? [] : u.jobs.split(','))))].join(','),
      reason: '',
    };
  }

  private async measureSlurm(a: Extract<Allocation, { kind: 'slurm-jobs' | 'slurm-session' }>, final: boolean, signal: AbortSignal): Promise<RoundUsage> {
    if (a.jobs.length === 0) return unknownUsage('no Slurm job ran this round');
    // Per-round jobs have ended by the receipt; a session's last round waits for its job's end.
    const mustEnd = a.kind === 'slurm-jobs' || final;
    const deadline = Date.now() + (this.o.settleMs ?? 60_000);
    const sleep = this.o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    for (;;) {
      const r = await this.o.accounting(a.jobs, signal);
      if (r.code !== 0) return unknownUsage(`sacct exited with ${r.code}: ${(r.stderr.trim() || r.stdout.trim()).split('\n')[0] ?? ''}`);
      const runs = parseAccounting(r.stdout);
      const settled = runs.length > 0 && (!mustEnd || runs.every(ENDED));
      if (settled) return a.kind === 'slurm-jobs' ? jobsUsage(a, runs) : sessionUsage(a, runs, final);
      if (Date.now() >= deadline) {
        return unknownUsage(runs.length === 0 ? `sacct has no record of job ${a.jobs.join(',')}` : `job ${a.jobs.join(',')} has not ended in Slurm's accounting`);
      }
      await sleep(this.o.pollMs ?? 1000);
    }
  }
}

function known(source: RoundUsage['source'], gpus: number, wallMs: number, allocatedGpuMs: number, busyMs: number, jobs: string): RoundUsage {
  const trainingGpuMs = Math.min(allocatedGpuMs, Math.max(0, Math.round(busyMs)) * gpus);
  return { source, gpus, wallMs, allocatedGpuMs, trainingGpuMs, jobs, reason: '' };
}

/** Every run of the round's jobs, whole. */
function jobsUsage(a: { readonly jobs: readonly string[]; readonly busyMs: number }, runs: readonly AccountedRun[]): RoundUsage {
  let wallMs = 0;
  let gpuMs = 0;
  for (const r of runs) {
    wallMs += r.elapsedMs;
    gpuMs += r.elapsedMs * r.gpus;
  }
  return known('slurm-sacct', Math.max(...runs.map((r) => r.gpus)), wallMs, gpuMs, a.busyMs, [...new Set(runs.map((r) => r.jobId))].join(','));
}

/** The part of the session's runs inside (fromMs, toMs] — to their end when `final`. */
function sessionUsage(a: { readonly jobs: readonly string[]; readonly fromMs?: number | undefined; readonly toMs: number; readonly busyMs: number }, runs: readonly AccountedRun[], final: boolean): RoundUsage {
  const from = a.fromMs ?? -Infinity;
  const to = final ? Infinity : a.toMs;
  let wallMs = 0;
  let gpuMs = 0;
  const jobs = new Set<string>();
  for (const r of runs) {
    // A run's end is its start plus what sacct counts as elapsed (both in whole seconds).
    const end = r.endMs !== undefined ? r.startMs + r.elapsedMs : Date.now();
    const ms = Math.max(0, Math.min(end, to) - Math.max(r.startMs, from));
    if (ms <= 0) continue;
    wallMs += ms;
    gpuMs += ms * r.gpus;
    jobs.add(r.jobId);
  }
  const gpus = Math.max(0, ...runs.filter((r) => jobs.has(r.jobId)).map((r) => r.gpus));
  return known('slurm-sacct', gpus, Math.round(wallMs), Math.round(gpuMs), a.busyMs, [...jobs].join(','));
}
