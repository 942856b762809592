/**
 * Budgeted shards in the in-process runners (issue 16): the stand-in trainer (paced sleeps, real
 * progress lines, a real local model) and the builtin trainer stop where a time or token budget
 * says, report the tokens and steps they processed and the busy span of their steps.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSafetensorsWriter, f32ToBf16, memorySink, memorySource, openSafetensors } from '../../../aggregation/index.js';
import { builtinRunnerSchema, initBuiltinModel, resolveBuiltinConfig, writeBuiltinModel } from '../../../site-agent/index.js';
import { budgetAllows, plannedShardSteps, readTrainBudget, stepsEstimate } from '../../../site-agent/runners/budget.js';
import { BuiltinRunner } from '../../../site-agent/runners/builtin.js';
import type { TrainProgress, TrainRequest, TrainResult } from '../../../site-agent/runners/runner.js';
import { StandinRunner, standinRunnerSchema, type StandinRunnerOptions } from '../../../site-agent/runners/standin.js';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { readProgressLines } from '../../helpers/progress-lines.js';

let work = '';
let globalPath = '';
/** Elements of the big tensor: more than one of the stand-in's 2^20-element slices. */
const BIG = (1 << 20) + 4099;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fedhpc-budget-runners-'));
  globalPath = join(work, 'global.safetensors');
  const specs = [
    { name: 'small.weight', dtype: 'F32' as const, shape: [3, 5] },
    { name: 'big.weight', dtype: 'BF16' as const, shape: [BIG] },
  ];
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, specs);
  await w.writeF32('small.weight', Float32Array.from({ length: 15 }, (_, i) => Math.sin(i) * 0.05));
  await w.writeF32('big.weight', Float32Array.from({ length: BIG }, (_, i) => Math.cos(i) * 0.05));
  await w.finish();
  await writeFile(globalPath, sink.bytes());
});
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

let rounds = 0;
function request(train: Record<string, unknown>, global = globalPath): TrainRequest & { seen: TrainProgress[] } {
  const seen: TrainProgress[] = [];
  rounds += 1;
  return {
    runId: 'run-1',
    round: rounds,
    attempt: 0,
    globalPath: global,
    globalSha256: '0'.repeat(64),
    roundDir: join(work, `round-${rounds}`),
    train,
    signal: AbortSignal.timeout(20_000),
    onProgress: (p) => seen.push(p),
    seen,
  };
}

const standin = (o: Partial<StandinRunnerOptions> = {}): StandinRunner => new StandinRunner(standinRunnerSchema.parse({ kind: 'standin', ...o }));

const progressLines = readProgressLines;

const span = (r: TrainResult): number => r.trainFinishedMs! - r.trainStartedMs!;

describe('budget helpers', () => {
  it('read {seconds} or {tokens}, plan a token budget as ceil(T / tokens per step) capped by the steps, and refuse anything else', () => {
    expect(readTrainBudget({ steps: 3 })).toBeUndefined();
    expect(readTrainBudget({ budget: { seconds: 1.5 } })).toEqual({ seconds: 1.5 });
    expect(readTrainBudget({ budget: { tokens: 1000 } })).toEqual({ tokens: 1000 });
    for (const bad of [{ seconds: 0 }, { tokens: 1.5 }, { seconds: 1, tokens: 2 }, { minutes: 1 }, 5, { tokens: -1 }]) {
      expect(() => readTrainBudget({ budget: bad })).toThrow(expect.objectContaining({ code: 'SPEC_INVALID', retryable: false }) as Error);
    }
    expect(plannedShardSteps({ tokens: 1000 }, undefined, 128)).toBe(8);
    expect(plannedShardSteps({ tokens: 1024 }, undefined, 128)).toBe(8);
    expect(plannedShardSteps({ tokens: 1000 }, 5, 128)).toBe(5);
    expect(plannedShardSteps({ seconds: 2 }, undefined, 128)).toBeUndefined();
    expect(plannedShardSteps(undefined, 7, 128)).toBe(7);
    // The first step is always taken; a time budget stops starting steps once it is spent.
    expect(budgetAllows({ seconds: 1 }, undefined, 0, 5_000)).toBe(true);
    expect(budgetAllows({ seconds: 1 }, undefined, 4, 999)).toBe(true);
    expect(budgetAllows({ seconds: 1 }, undefined, 4, 1_000)).toBe(false);
    expect(budgetAllows({ seconds: 1 }, 4, 4, 10)).toBe(false);
    expect(stepsEstimate({ seconds: 1 }, undefined, 10, 250)).toBe(40);
  });
});

describe('the stand-in runner', () => {
  it('under a time budget takes steps at its speed until the budget is spent, and reports tokens, steps and the busy span its progress lines show', async () => {
    const req = request({ batch_size: 4, seq_len: 32, budget: { seconds: 0.4 }, lr: 0.1 });
    const r = await standin({ speed: 2, stepMs: 40 }).train(req); // 20 ms a step: 20 steps in 0.4 s
    expect(r.steps).toBeGreaterThanOrEqual(12); // timers may be late on a loaded machine, never early
    expect(r.steps).toBeLessThanOrEqual(21);
    expect(r).toMatchObject({ samples: r.steps * 4, tokens: r.steps * 4 * 32 });
    expect(span(r)).toBeGreaterThanOrEqual(380);
    expect(span(r)).toBeLessThan(400 + 3 * 20 + 200);
    const lines = await progressLines(req.roundDir);
    expect(lines.map((l) => l.step)).toEqual(Array.from({ length: r.steps }, (_, i) => i + 1));
    expect(lines.at(-1)).toMatchObject({ tokens: r.tokens, ts: r.trainFinishedMs });
    for (const [i, l] of lines.entries()) if (i > 0) expect(l.ts).toBeGreaterThan(lines[i - 1]!.ts);
    expect(lines[0]!.ts - r.trainStartedMs!).toBeGreaterThanOrEqual(19);
    expect(req.seen.at(-1)).toMatchObject({ step: r.steps, steps: r.steps });
  });

  it('sites of speed 1 and 3 under the same time budget take steps in that ratio', async () => {
    const train = { batch_size: 2, budget: { seconds: 0.45 } };
    const [slow, fast] = await Promise.all([standin({ speed: 1, stepMs: 45 }).train(request(train)), standin({ speed: 3, stepMs: 45 }).train(request(train))]);
    expect(slow.steps).toBeLessThanOrEqual(10);
    expect(fast.steps / slow.steps).toBeGreaterThan(2.2);
    expect(fast.steps / slow.steps).toBeLessThan(3.8);
    expect(fast.tokens).toBe(fast.steps * 2); // seq_len absent: one token per sample
  });

  it('under a token budget stops at the first step whose tokens reach T (at most one batch past it); a step count caps it; steps alone are taken as given', async () => {
    const runner = standin({ speed: 100, stepMs: 50 });
    const byTokens = await runner.train(request({ batch_size: 4, seq_len: 32, budget: { tokens: 1000 } }));
    expect(byTokens).toMatchObject({ steps: 8, tokens: 1024, samples: 32 });
    expect(byTokens.tokens).toBeLessThan(1000 + 4 * 32);
    const capped = await runner.train(request({ max_steps: 3, batch_size: 4, seq_len: 32, budget: { tokens: 1000 } }));
    expect(capped).toMatchObject({ steps: 3, tokens: 384 });
    const fixed = await runner.train(request({ steps: 5, batchSize: 16 }));
    expect(fixed).toMatchObject({ steps: 5, samples: 80, tokens: 80 });
  });

  it('writes an F32 model with the global\'s names and shapes that moves toward the site\'s target: its loss falls, and many steps land on the target coordinate for coordinate', async () => {
    const runner = standin({ speed: 1000, stepMs: 1, evalElements: BIG });
    const few = await runner.train(request({ steps: 10, batch_size: 1 }));
    const out = await openSafetensors(memorySource(new Uint8Array(await readFile(few.outPath))));
    expect(out.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([
      ['small.weight', 'F32', [3, 5]],
      ['big.weight', 'F32', [BIG]],
    ]);
    const before = await runner.evaluate(globalPath, AbortSignal.timeout(10_000));
    const after = await runner.evaluate(few.outPath, AbortSignal.timeout(10_000));
    expect(before.samples).toBe(15 + BIG);
    // Ten steps of pull 0.01: the distance to the target shrinks by 0.99^10.
    expect(after.loss / before.loss).toBeCloseTo(0.99 ** 20, 3);
    expect(few.trainLoss).toBeLessThan(before.loss);
    // 5000 steps: (0.99)^5000 ≈ 1.5e-22, every coordinate is its target, across the 2^20 slice edge.
    const many = await standin({ speed: 1e3, stepMs: 0.001, evalElements: BIG }).train(request({ steps: 5000, batch_size: 1 }));
    expect((await runner.evaluate(many.outPath, AbortSignal.timeout(10_000))).loss).toBeLessThan(1e-9);
    // Another site's target is elsewhere.
    expect((await standin({ seed: 2, evalElements: BIG }).evaluate(many.outPath, AbortSignal.timeout(10_000))).loss).toBeGreaterThan(0.01);
  });

  it('writes its model in BF16 when told to, as a GPU trainer with outputDtype BF16 does: the F32 model rounded, half the bytes', async () => {
    const f32 = await standin({ speed: 1000, stepMs: 1 }).train(request({ steps: 10, batch_size: 1 }));
    const f32Bytes = await readFile(f32.outPath);
    const asF32 = await openSafetensors(memorySource(new Uint8Array(f32Bytes)));
    const bf16 = await standin({ speed: 1000, stepMs: 1, outputDtype: 'BF16' }).train(request({ steps: 10, batch_size: 1 }));
    const asBf16 = await openSafetensors(memorySource(new Uint8Array(await readFile(bf16.outPath))));
    expect(asBf16.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual(asF32.tensors.map((t) => [t.name, 'BF16', t.shape]));
    for (const t of asF32.tensors) {
      const want = f32ToBf16(await asF32.readF32(t.name, 0, t.elements));
      const got = await asBf16.readBytes(t.name, 0, t.elements * 2);
      expect(Buffer.from(got).equals(Buffer.from(want.buffer))).toBe(true);
    }
  });

  it('refuses training settings it cannot honour with SPEC_INVALID, and stops when the round is aborted', async () => {
    const runner = standin();
    await expect(runner.train(request({ batch_size: 4 }))).rejects.toMatchObject({ code: 'SPEC_INVALID' });
    await expect(runner.train(request({ max_steps: 4 }))).rejects.toMatchObject({ code: 'SPEC_INVALID' });
    await expect(runner.train(request({ max_steps: 4, batch_size: 1, budget: { seconds: -1 } }))).rejects.toMatchObject({ code: 'SPEC_INVALID' });
    const abort = new AbortController();
    const req = { ...request({ batch_size: 1, budget: { seconds: 30 } }), signal: abort.signal };
    const running = runner.train(req);
    setTimeout(() => abort.abort(new SiteAgentError('CANCELLED', 'round aborted', false)), 150);
    await expect(running).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});

describe('the builtin runner with a budget', () => {
  let builtinGlobal = '';
  const builtin = (): BuiltinRunner => new BuiltinRunner(builtinRunnerSchema.parse({ kind: 'builtin', language: 'en', trainChars: 20_000, heldoutChars: 2_000, seed: 3 }));
  beforeAll(async () => {
    builtinGlobal = join(work, 'builtin.safetensors');
    const config = resolveBuiltinConfig({});
    await writeBuiltinModel(builtinGlobal, initBuiltinModel(config, 7), config);
  });

  it('stops a token budget at ceil(T / batchSize) steps (one token per sample) and reports its busy span', async () => {
    const r = await builtin().train(request({ batchSize: 8, lr: 0.01, budget: { tokens: 50 } }, builtinGlobal));
    expect(r).toMatchObject({ steps: 7, samples: 56, tokens: 56 });
    expect(r.trainStartedMs).toBeGreaterThan(0);
    expect(r.trainFinishedMs).toBeGreaterThanOrEqual(r.trainStartedMs!);
  });

  it('under a time budget trains until it is spent, stopping within about a step of it', async () => {
    const req = request({ batchSize: 8, lr: 0.01, budget: { seconds: 0.3 } }, builtinGlobal);
    const r = await builtin().train(req);
    expect(r.steps).toBeGreaterThan(1);
    expect(r.tokens).toBe(r.steps * 8);
    const perStep = span(r) / r.steps;
    expect(span(r)).toBeGreaterThanOrEqual(300);
    expect(span(r)).toBeLessThan(300 + 2 * perStep + 300);
    expect(req.seen.at(-1)).toMatchObject({ step: r.steps, steps: r.steps });
  });

  it('still trains a plain step count, and refuses settings with neither steps nor a budget', async () => {
    const r = await builtin().train(request({ steps: 12, batchSize: 4, lr: 0.01 }, builtinGlobal));
    expect(r).toMatchObject({ steps: 12, samples: 48 });
    await expect(builtin().train(request({ batchSize: 4, lr: 0.01 }, builtinGlobal))).rejects.toMatchObject({ code: 'SPEC_INVALID' });
  });
});
