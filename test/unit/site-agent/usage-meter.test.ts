/**
 * The agent's measure of a round's usage (site-agent/usage.ts): sacct's lines parsed as Slurm 22.05
 * prints them (`SLURM_TIME_FORMAT=%s`), per-round jobs summed over every run of each job, a
 * persistent job split by snapshot interval so the rounds add up to the job's total, and every way
 * accounting can fail reported as `unknown` with the reason. sacct itself is scripted here (its
 * output captured from the real one-node cluster); the real cluster is
 * test/integration/runners/slurm-usage.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { usageProblem } from '../../../common/usage.js';
import { UsageMeter, gpusOfTres, parseAccounting, type Allocation } from '../../../site-agent/usage.js';

const line = (id: string, state: string, elapsedS: number, tres: string, startS: number | 'Unknown', endS: number | 'Unknown'): string => `${id}|${state}|${elapsedS}|${tres}|${startS}|${endS}`;

/** A meter whose sacct prints `outputs` in turn (the last one repeats). */
function scripted(outputs: readonly { code?: number; stdout?: string; stderr?: string }[]) {
  let calls = 0;
  const asked: string[][] = [];
  const meter = new UsageMeter({
    accounting: (jobs) => {
      asked.push([...jobs]);
      const o = outputs[Math.min(calls++, outputs.length - 1)]!;
      return Promise.resolve({ code: o.code ?? 0, stdout: o.stdout ?? '', stderr: o.stderr ?? '' });
    },
    settleMs: 50,
    pollMs: 1,
    sleep: () => Promise.resolve(),
  });
  return { meter, asked, calls: () => calls };
}

const signal = (): AbortSignal => AbortSignal.timeout(10_000);

describe('sacct parsing', () => {
  it('reads the GPUs of AllocTRES, untyped or typed', () => {
    expect(gpusOfTres('billing=1,cpu=1,gres/gpu=2,mem=500M,node=1')).toBe(2);
    expect(gpusOfTres('cpu=4,gres/gpu:a100=4,gres/gpu=4,node=1')).toBe(4);
    expect(gpusOfTres('cpu=4,gres/gpu:a100=2,gres/gpu:h100=1,node=1')).toBe(3);
    expect(gpusOfTres('billing=1,cpu=1,mem=500M,node=1')).toBe(0);
    expect(gpusOfTres('')).toBe(0);
  });

  it('keeps every started run of a job, an open end for a running one, and skips runs that never started', () => {
    const out = [line('41', 'REQUEUED', 30, 'cpu=1,gres/gpu=2,node=1', 1000, 1030), line('41', 'RUNNING', 12, 'cpu=1,gres/gpu=2,node=1', 1045, 'Unknown'), line('42', 'PENDING', 0, '', 'Unknown', 'Unknown'), 'garbage', ''].join('\n');
    expect(parseAccounting(out)).toEqual([
      { jobId: '41', state: 'REQUEUED', gpus: 2, startMs: 1_000_000, endMs: 1_030_000, elapsedMs: 30_000 },
      { jobId: '41', state: 'RUNNING', gpus: 2, startMs: 1_045_000, endMs: undefined, elapsedMs: 12_000 },
    ]);
    expect(parseAccounting(line('7', 'CANCELLED by 0', 5, 'gres/gpu=1', 10, 15))[0]!.state).toBe('CANCELLED');
  });
});

describe('usage of per-round Slurm jobs', () => {
  const jobs: Allocation = { kind: 'slurm-jobs', jobs: ['41'], busyMs: 20_000 };

  it('sums every run of the round\'s jobs (a requeue counts both), training = busy span × GPUs', async () => {
    const { meter, asked } = scripted([{ stdout: [line('41', 'REQUEUED', 30, 'gres/gpu=2', 1000, 1030), line('41', 'COMPLETED', 40, 'gres/gpu=2', 1045, 1085)].join('\n') }]);
    const u = await meter.measure(jobs, false, signal());
    expect(u).toEqual({ source: 'slurm-sacct', gpus: 2, wallMs: 70_000, allocatedGpuMs: 140_000, trainingGpuMs: 40_000, jobs: '41', reason: '' });
    expect(usageProblem(u)).toBeUndefined();
    expect(asked).toEqual([['41']]);
  });

  it('waits for sacct to show the job ended (its lag), then measures', async () => {
    const { meter, calls } = scripted([{ stdout: line('41', 'RUNNING', 3, 'gres/gpu=1', 1000, 'Unknown') }, { stdout: line('41', 'COMPLETED', 5, 'gres/gpu=1', 1000, 1005) }]);
    expect((await meter.measure(jobs, false, signal())).allocatedGpuMs).toBe(5_000);
    expect(calls()).toBe(2);
  });

  it('caps training at the allocation (a busy span measured on another clock)', async () => {
    const { meter } = scripted([{ stdout: line('41', 'COMPLETED', 10, 'gres/gpu=4', 1000, 1010) }]);
    expect(await meter.measure({ kind: 'slurm-jobs', jobs: ['41'], busyMs: 12_000 }, false, signal())).toMatchObject({ allocatedGpuMs: 40_000, trainingGpuMs: 40_000 });
  });

  it('reports unknown, never 0, when accounting fails, forgets the job, or never shows its end', async () => {
    const disabled = scripted([{ code: 1, stderr: 'sacct: error: Slurm accounting storage is disabled\n' }]);
    expect(await disabled.meter.measure(jobs, false, signal())).toEqual({ source: 'unknown', gpus: 0, wallMs: 0, allocatedGpuMs: 0, trainingGpuMs: 0, jobs: '', reason: 'sacct exited with 1: sacct: error: Slurm accounting storage is disabled' });
    expect((await scripted([{ stdout: '' }]).meter.measure(jobs, false, signal())).reason).toBe('sacct has no record of job 41');
    expect((await scripted([{ stdout: line('41', 'RUNNING', 3, 'gres/gpu=1', 1000, 'Unknown') }]).meter.measure(jobs, false, signal())).reason).toBe('job 41 has not ended in Slurm\'s accounting');
    const thrown = new UsageMeter({ accounting: () => Promise.reject(new Error('spawn sacct ENOENT')) });
    expect((await thrown.measure(jobs, false, signal())).reason).toBe('sacct: spawn sacct ENOENT');
    expect((await thrown.measure({ kind: 'slurm-jobs', jobs: [], busyMs: 0 }, false, signal())).reason).toBe('no Slurm job ran this round');
    expect((await thrown.measure(undefined, false, signal())).source).toBe('unknown');
  });
});

describe('usage of a persistent trainer\'s job, split by snapshot', () => {
  // One job: started at 1000 s, requeued at 1060 s, running again 1070–1120 s, 2 GPUs.
  const runs = [line('50', 'REQUEUED', 60, 'gres/gpu=2', 1000, 1060), line('50', 'COMPLETED', 50, 'gres/gpu=2', 1070, 1120)].join('\n');
  const running = [line('50', 'REQUEUED', 60, 'gres/gpu=2', 1000, 1060), line('50', 'RUNNING', 20, 'gres/gpu=2', 1070, 'Unknown')].join('\n');
  const session = (fromS: number | undefined, toS: number): Allocation => ({ kind: 'slurm-session', jobs: ['50'], fromMs: fromS === undefined ? undefined : fromS * 1000, toMs: toS * 1000, busyMs: 10_000 });

  it('gives each round the job\'s time between its snapshots, and the rounds add up to the job\'s total', async () => {
    const snapshots = [1030, 1080, 1100];
    const { meter } = scripted([{ stdout: runs }]);
    const rounds = [];
    for (const [i, to] of snapshots.entries()) rounds.push(await meter.measure(session(snapshots[i - 1], to), i === snapshots.length - 1, signal()));
    // Round 1: start → 1030; round 2: 1030 → 1060 and 1070 → 1080; round 3 (the last): 1080 → the end, past its snapshot.
    expect(rounds.map((u) => u.wallMs)).toEqual([30_000, 40_000, 40_000]);
    expect(rounds.map((u) => u.allocatedGpuMs)).toEqual([60_000, 80_000, 80_000]);
    expect(rounds.reduce((s, u) => s + u.allocatedGpuMs, 0)).toBe((60 + 50) * 1000 * 2);
    for (const u of rounds) expect(u).toMatchObject({ source: 'slurm-sacct', gpus: 2, jobs: '50', trainingGpuMs: 20_000 });
  });

  it('measures a round in the middle while the job still runs, and waits for the end only for the last', async () => {
    const middle = scripted([{ stdout: running }]);
    expect((await middle.meter.measure(session(1030, 1080), false, signal())).wallMs).toBe(40_000);
    expect(middle.calls()).toBe(1);
    const last = scripted([{ stdout: running }, { stdout: runs }]);
    expect((await last.meter.measure(session(1080, 1100), true, signal())).wallMs).toBe(40_000);
    expect(last.calls()).toBe(2);
  });
});

describe('wall-clock usage', () => {
  it('is the runner\'s clock × its GPUs, labelled as such', async () => {
    const meter = new UsageMeter({ accounting: () => Promise.reject(new Error('unused')) });
    expect(await meter.measure({ kind: 'wall-clock', gpus: 4, startedMs: 1000, endedMs: 3500, busyMs: 2000 }, false, signal())).toEqual({ source: 'wall-clock', gpus: 4, wallMs: 2500, allocatedGpuMs: 10_000, trainingGpuMs: 8000, jobs: '', reason: '' });
    expect(await meter.measure({ kind: 'wall-clock', gpus: 0, startedMs: 1000, endedMs: 3500, busyMs: 2000 }, false, signal())).toMatchObject({ allocatedGpuMs: 0, trainingGpuMs: 0 });
    expect((await meter.measure({ kind: 'unknown', reason: 'runner.gpus is not configured' }, false, signal())).reason).toBe('runner.gpus is not configured');
  });
});

describe('usage of an upload that folds kept work', () => {
  const meter = new UsageMeter({ accounting: () => Promise.resolve({ code: 0, stdout: [line('41', 'COMPLETED', 100, 'gres/gpu=2', 1000, 1100), line('38', 'COMPLETED', 50, 'gres/gpu=4', 800, 850)].join('\n'), stderr: '' }) });
  const fresh: Allocation = { kind: 'slurm-jobs', jobs: ['41'], busyMs: 80_000 };
  const kept: Allocation = { kind: 'slurm-jobs', jobs: ['38'], busyMs: 40_000 };

  it('adds the folded parts\' GPU time to the fresh shard\'s, when one source measured them all', async () => {
    const scripted = (jobs: readonly string[]) => Promise.resolve({ code: 0, stdout: jobs.map((j) => (j === '41' ? line('41', 'COMPLETED', 100, 'gres/gpu=2', 1000, 1100) : line('38', 'COMPLETED', 50, 'gres/gpu=4', 800, 850))).join('\n'), stderr: '' });
    const u = await new UsageMeter({ accounting: scripted }).measureAll(fresh, [kept], false, signal());
    expect(u).toEqual({ source: 'slurm-sacct', gpus: 4, wallMs: 150_000, allocatedGpuMs: 100 * 2000 + 50 * 4000, trainingGpuMs: 80_000 * 2 + 40_000 * 4, jobs: '41,38', reason: '' });
    expect(usageProblem(u)).toBeUndefined();
    expect(await meter.measureAll(fresh, [], false, signal())).toMatchObject({ jobs: '41,38' }); // this meter's sacct prints both jobs for any query
  });

  it('makes the round unknown, with the reason, when a folded part cannot be measured or was measured otherwise', async () => {
    const noRecord = await meter.measureAll(fresh, [undefined], false, signal());
    expect(noRecord).toMatchObject({ source: 'unknown', allocatedGpuMs: 0 });
    expect(noRecord.reason).toMatch(/^a folded part from an earlier round: a kept part from before this agent recorded allocations/);
    const mixed = await meter.measureAll(fresh, [{ kind: 'wall-clock', gpus: 1, startedMs: 0, endedMs: 1000, busyMs: 500 }], false, signal());
    expect(mixed.reason).toBe('the round\'s parts were measured by different sources (slurm-sacct, wall-clock); not added up');
  });
});
