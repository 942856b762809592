import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSafetensorsWriter, memorySink, memorySource, openSafetensors } from '../../../aggregation/index.js';
import { TORCH_PYTHON, torchAvailable } from './require-torch.js';
import { readProgressLines } from '../../helpers/progress-lines.js';

// The PyTorch reference trainer (site-agent/trainers/torch_shard.py) driven as the agent drives it:
// a round directory in, exit code + DONE.json + out/model.safetensors back.
const TRAINERS = fileURLToPath(new URL('../../../site-agent/trainers/', import.meta.url));
const TRAINER = join(TRAINERS, 'torch_shard.py');
const RUN_DEADLINE_MS = 90_000;
const STEPS = 60;
const BATCH = 8;
const SEQ = 32;

interface LlamaShape {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  vocab_size: number;
}

/** Hugging Face LlamaForCausalLM's tensors for a config, in the trainer's file order. */
function hfLlamaTensors(c: LlamaShape): [string, number[]][] {
  const h = c.hidden_size;
  const kv = c.num_key_value_heads * (h / c.num_attention_heads);
  const out: [string, number[]][] = [['model.embed_tokens.weight', [c.vocab_size, h]]];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    out.push(
      [`${p}self_attn.q_proj.weight`, [h, h]],
      [`${p}self_attn.k_proj.weight`, [kv, h]],
      [`${p}self_attn.v_proj.weight`, [kv, h]],
      [`${p}self_attn.o_proj.weight`, [h, h]],
      [`${p}mlp.gate_proj.weight`, [c.intermediate_size, h]],
      [`${p}mlp.up_proj.weight`, [c.intermediate_size, h]],
      [`${p}mlp.down_proj.weight`, [h, c.intermediate_size]],
      [`${p}input_layernorm.weight`, [h]],
      [`${p}post_attention_layernorm.weight`, [h]],
    );
  }
  out.push(['model.norm.weight', [h]], ['lm_head.weight', [c.vocab_size, h]]);
  return out;
}

const readJson = async <T>(path: string): Promise<T> => JSON.parse(await readFile(path, 'utf8')) as T;
const sha256 = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

describe('trainer model configs', () => {
  it('salamandra-2b.json has Salamandra-2B parameter count (REFERENCE.md)', async () => {
    const c = await readJson<LlamaShape>(join(TRAINERS, 'configs', 'salamandra-2b.json'));
    const params = hfLlamaTensors(c).reduce((sum, [, shape]) => sum + shape.reduce((a, b) => a * b, 1), 0);
    expect(params).toBe(2_253_490_176);
  });
});

interface Exit {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function startTrainer(args: readonly string[]): { child: ChildProcess; exit: Promise<Exit> } {
  const child = spawn(TORCH_PYTHON, [TRAINER, ...args], { stdio: ['ignore', 'pipe', 'pipe'], signal: AbortSignal.timeout(RUN_DEADLINE_MS) });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exit = new Promise<Exit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { child, exit };
}

const runTrainer = (...args: string[]): Promise<Exit> => startTrainer(args).exit;


const progress = readProgressLines;

interface Spec {
  round: number;
  seed: number;
  train: Record<string, number | string>;
  data: Record<string, string | number>;
  output_dtype: string;
  global_sha256: string;
  model_config_sha256?: string;
  keep_optimizer_state?: string;
  attempt?: number;
  version?: number;
  budget?: Record<string, number>;
}

interface Done {
  status: string;
  round: number;
  steps: number;
  tokens: number;
  samples: number;
  trainLoss: number;
  dataManifestSha256: string;
  dataManifest: Record<string, string | number>;
  /** Where the next round's data stream continues (the reference trainer's `data.cursor`). */
  nextCursor: number;
  outSha256: string;
  /** Contract version 2: the start of the first step and the end of the last (Unix ms). */
  trainStartedMs: number;
  trainFinishedMs: number;
}

const torch = torchAvailable();

describe.skipIf(!torch.ok)('torch_shard.py (PyTorch reference trainer)', () => {
  let work = '';
  let tokensPath = '';
  let heldoutPath = '';
  let initDir = '';
  let tiny: LlamaShape;
  let fullRound: Promise<{ dir: string; exit: Exit }> | undefined;

  // A repeating 11-token pattern: learnable by a tiny model in a few dozen steps.
  const pattern = [3, 17, 42, 99, 5, 128, 64, 7, 200, 33, 11];
  const tokenFile = (count: number, offset: number): Uint8Array => {
    const view = new DataView(new ArrayBuffer(count * 4));
    for (let i = 0; i < count; i++) view.setUint32(i * 4, pattern[(i + offset) % pattern.length]!, true);
    return new Uint8Array(view.buffer);
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fedhpc-torch-shard-'));
    tokensPath = join(work, 'train.u32');
    heldoutPath = join(work, 'heldout.u32');
    await writeFile(tokensPath, tokenFile(20_000, 0));
    await writeFile(heldoutPath, tokenFile(3_000, 5));
    tiny = await readJson<LlamaShape>(join(TRAINERS, 'configs', 'tiny.json'));
    initDir = join(work, 'init-seed1');
    const init = await runTrainer('--init', '--config', join(TRAINERS, 'configs', 'tiny.json'), '--out', initDir, '--seed', '1');
    expect(init, init.stderr).toMatchObject({ code: 0 });
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function makeRound(name: string, edit?: (spec: Spec) => void, weights = join(initDir, 'model.safetensors')): Promise<string> {
    const dir = join(work, name);
    await mkdir(join(dir, 'global'), { recursive: true });
    await cp(weights, join(dir, 'global', 'model.safetensors'));
    await cp(join(initDir, 'config.json'), join(dir, 'global', 'config.json'));
    const spec: Spec = {
      round: 3,
      seed: 11,
      train: { max_steps: STEPS, lr: 3e-3, batch_size: BATCH, seq_len: SEQ, warmup_steps: 5, weight_decay: 0.01 },
      data: { train_tokens: tokensPath, cursor: 0 },
      output_dtype: 'F32',
      global_sha256: sha256(await readFile(weights)),
      model_config_sha256: sha256(await readFile(join(initDir, 'config.json'))),
    };
    edit?.(spec);
    await writeFile(join(dir, 'spec.json'), JSON.stringify(spec));
    return dir;
  }

  /** One uninterrupted round, shared by the tests that compare against it. */
  const trainedRound = (): Promise<{ dir: string; exit: Exit }> =>
    (fullRound ??= makeRound('full').then(async (dir) => ({ dir, exit: await runTrainer('--round-dir', dir) })));

  const openFile = async (path: string) => openSafetensors(memorySource(new Uint8Array(await readFile(path))));

  it('--init writes the same bytes for the same seed and config, other bytes for another seed', { timeout: 60_000 }, async () => {
    const config = join(TRAINERS, 'configs', 'tiny.json');
    const [again, other] = await Promise.all([
      runTrainer('--init', '--config', config, '--out', join(work, 'init-seed1-again'), '--seed', '1'),
      runTrainer('--init', '--config', config, '--out', join(work, 'init-seed2'), '--seed', '2'),
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(other.code, other.stderr).toBe(0);
    const first = await readFile(join(initDir, 'model.safetensors'));
    expect(sha256(await readFile(join(work, 'init-seed1-again', 'model.safetensors')))).toBe(sha256(first));
    expect(sha256(await readFile(join(work, 'init-seed2', 'model.safetensors')))).not.toBe(sha256(first));
    expect(await readFile(join(work, 'init-seed1-again', 'config.json'), 'utf8')).toBe(await readFile(join(initDir, 'config.json'), 'utf8'));
  });

  it('--init writes exactly LlamaForCausalLM tensor names and shapes in F32, readable by openSafetensors', async () => {
    const file = await openFile(join(initDir, 'model.safetensors'));
    expect(file.metadata).toEqual({ format: 'pt' });
    expect(file.tensors.map((t) => [t.name, t.shape])).toEqual(hfLlamaTensors(tiny));
    expect(new Set(file.tensors.map((t) => t.dtype))).toEqual(new Set(['F32']));
    expect(Array.from(await file.readF32('model.norm.weight', 0, tiny.hidden_size)).every((v) => v === 1)).toBe(true);
    const embed = await file.readF32('model.embed_tokens.weight', 0, tiny.vocab_size * tiny.hidden_size);
    const std = Math.sqrt(embed.reduce((s, v) => s + v * v, 0) / embed.length);
    expect(std).toBeGreaterThan(0.018);
    expect(std).toBeLessThan(0.022);
    const config = await readJson<Record<string, unknown>>(join(initDir, 'config.json'));
    expect(config).toMatchObject({ ...tiny, architectures: ['LlamaForCausalLM'], model_type: 'llama', tie_word_embeddings: false });
  });

  it('trains a round: loss falls, one progress line per step, DONE.json agrees with out/', { timeout: 60_000 }, async () => {
    const { dir, exit } = await trainedRound();
    expect(exit.code, exit.stderr).toBe(0);
    const done = await readJson<Done>(join(dir, 'DONE.json'));
    const outBytes = await readFile(join(dir, 'out', 'model.safetensors'));
    expect(done).toMatchObject({ status: 'done', round: 3, steps: STEPS, samples: STEPS * BATCH, tokens: STEPS * BATCH * SEQ });
    expect(done.outSha256).toBe(sha256(outBytes));
    // The manifest hash is over its canonical JSON (sorted keys, no spaces), so the agent can recheck it.
    const keys = Object.keys(done.dataManifest).sort();
    expect(done.dataManifestSha256).toBe(sha256(JSON.stringify(done.dataManifest, keys)));
    expect(done.dataManifest).toMatchObject({ sha256: sha256(await readFile(tokensPath)), bytes: 80_000, cursor_start: 0, format: 'uint32le' });

    const lines = await progress(dir);
    expect(lines.map((l) => l.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    expect(lines.at(-1)).toMatchObject({ steps: STEPS, tokens: STEPS * BATCH * SEQ });
    expect(lines.at(-1)!.loss).toBeLessThan(lines[0]!.loss / 4);
    expect(existsSync(join(dir, 'scratch', 'resume.pt'))).toBe(false);

    const out = await openSafetensors(memorySource(new Uint8Array(outBytes)));
    const global = await openFile(join(dir, 'global', 'model.safetensors'));
    expect(out.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual(global.tensors.map((t) => [t.name, t.dtype, t.shape]));
    expect(sha256(outBytes)).not.toBe(sha256(await readFile(join(dir, 'global', 'model.safetensors'))));
  });

  it('on SIGTERM mid-training exits 75 with a checkpoint in scratch/; the rerun resumes to the uninterrupted weights', { timeout: 90_000 }, async () => {
    const dir = await makeRound('interrupted');
    const run = startTrainer(['--round-dir', dir]);
    let exited = false;
    void run.exit.finally(() => (exited = true)).catch(() => undefined);
    const deadline = Date.now() + 60_000;
    while ((await progress(dir)).length < 3) {
      if (exited || Date.now() > deadline) throw new Error(`trainer exited or stalled before step 3: ${(await run.exit).stderr}`);
      await sleep(20);
    }
    run.child.kill('SIGTERM');
    const stopped = await run.exit;
    expect(stopped.code, stopped.stderr).toBe(75);
    expect(existsSync(join(dir, 'scratch', 'resume.pt'))).toBe(true);
    expect(existsSync(join(dir, 'DONE.json'))).toBe(false);
    const interrupted = await progress(dir);
    const before = interrupted.length;
    expect(before).toBeGreaterThanOrEqual(3);
    expect(before).toBeLessThan(STEPS);

    // The agent resubmits as a new attempt with a new seed: the checkpoint still applies.
    const spec = await readJson<Spec>(join(dir, 'spec.json'));
    await writeFile(join(dir, 'spec.json'), JSON.stringify({ ...spec, attempt: 2, seed: 12 }));
    const resumed = await runTrainer('--round-dir', dir);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`steps ${before + 1}..${STEPS}`);
    expect((await progress(dir)).map((l) => l.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    expect(existsSync(join(dir, 'scratch', 'resume.pt'))).toBe(false);
    // Exact on CPU: the checkpoint holds weights, AdamW moments and the data cursor.
    const full = await trainedRound();
    const outSha = sha256(await readFile(join(dir, 'out', 'model.safetensors')));
    expect(outSha).toBe(sha256(await readFile(join(full.dir, 'out', 'model.safetensors'))));
    const [a, b] = await Promise.all([readJson<Done>(join(dir, 'DONE.json')), readJson<Done>(join(full.dir, 'DONE.json'))]);
    const work = ({ trainStartedMs: _s, trainFinishedMs: _f, ...rest }: Done): Omit<Done, 'trainStartedMs' | 'trainFinishedMs'> => rest;
    expect(work(a)).toEqual(work(b));
    // The busy span runs from the first run's first step (kept in the checkpoint) to the rerun's last.
    expect(a.trainStartedMs).toBeLessThanOrEqual(interrupted[0]!.ts);
    expect(a.trainFinishedMs).toBe((await progress(dir)).at(-1)!.ts);
  });

  it('--eval prints a finite loss per token, lower after training, and reads BF16 weights written by the repo', { timeout: 60_000 }, async () => {
    const { dir } = await trainedRound();
    // The same initial weights narrowed to BF16 by our own writer, as an HF bf16 checkpoint would come.
    const init = await openFile(join(initDir, 'model.safetensors'));
    const sink = memorySink();
    const writer = await createSafetensorsWriter(sink, init.tensors.map((t) => ({ name: t.name, dtype: 'BF16' as const, shape: t.shape })));
    for (const t of init.tensors) await writer.writeF32(t.name, await init.readF32(t.name, 0, t.elements));
    await writer.finish();
    const bf16Path = join(work, 'init-bf16.safetensors');
    await writeFile(bf16Path, sink.bytes());

    const config = join(initDir, 'config.json');
    const evalArgs = (model: string) => ['--eval', '--model', model, '--config', config, '--tokens', heldoutPath, '--seq-len', '64'];
    const runs = await Promise.all([
      runTrainer(...evalArgs(join(initDir, 'model.safetensors'))),
      runTrainer(...evalArgs(bf16Path)),
      runTrainer(...evalArgs(join(dir, 'out', 'model.safetensors')), '--max-batches', '2'),
    ]);
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const [before, beforeBf16, after] = runs.map((r) => JSON.parse(r.stdout) as { loss: number; samples: number });
    expect(Number.isFinite(before!.loss)).toBe(true);
    expect(before!.loss).toBeGreaterThan(0.9 * Math.log(tiny.vocab_size));
    expect(before!.samples).toBe(Math.floor((3_000 - 1) / 64) * 64);
    expect(beforeBf16!.loss).toBeCloseTo(before!.loss, 2);
    expect(after!.samples).toBe(2 * 8 * 64);
    expect(after!.loss).toBeLessThan(before!.loss / 4);
  });

  it('keeps the inner AdamW state across rounds in keep_optimizer_state', { timeout: 60_000 }, async () => {
    const stateDir = join(work, 'site-optimizer');
    const keep = (s: Spec): void => {
      s.train.max_steps = 5;
      s.keep_optimizer_state = stateDir;
    };
    const first = await makeRound('kept-1', keep);
    expect((await runTrainer('--round-dir', first)).code).toBe(0);
    expect(existsSync(join(stateDir, 'adamw.pt'))).toBe(true);
    // Same global, spec and data: only the carried moments can make the second shard differ.
    const second = await makeRound('kept-2', keep);
    const again = await runTrainer('--round-dir', second);
    expect(again.code, again.stderr).toBe(0);
    const [a, b] = await Promise.all([readJson<Done>(join(first, 'DONE.json')), readJson<Done>(join(second, 'DONE.json'))]);
    expect(b.steps).toBe(5);
    expect(b.outSha256).not.toBe(a.outSha256);
  });

  it('reads a shuffled stream by default (every window once an epoch, keyed by the data) and file order on request', { timeout: 60_000 }, async () => {
    // take_windows itself, over a file of 100 windows: two epochs, two keys.
    const probe = `
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("ts", sys.argv[1]); ts = importlib.util.module_from_spec(spec); spec.loader.exec_module(ts)
count, L = 100 * 32 + 1, 32
def epochs(key):
    starts, cursor, wraps = ts.take_windows("shuffled", 0, count, L, 200, key)
    return starts[:100], starts[100:], cursor, wraps
a1, a2, cursor, wraps = epochs(1)
b1, _, _, _ = epochs(2)
print(json.dumps({"a1": a1, "a2": a2, "a1again": epochs(1)[0], "b1": b1, "cursor": cursor, "wraps": wraps,
                  "seq": ts.take_windows("sequential", 3136, count, L, 3, 1)}))`;
    const r = await new Promise<Exit>((resolve, reject) => {
      const child = spawn(TORCH_PYTHON, ['-c', probe, TRAINER], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', reject).on('close', (code) => resolve({ code, stdout, stderr }));
    });
    expect(r.code, r.stderr).toBe(0);
    const o = JSON.parse(r.stdout) as Record<string, number[] | number | [number[], number, number]>;
    const every = Array.from({ length: 100 }, (_, i) => i * 32);
    for (const epoch of [o['a1'], o['a2'], o['b1']] as number[][]) expect([...epoch].sort((x, y) => x - y)).toEqual(every);
    expect(o['a1']).not.toEqual(every); // shuffled, not file order
    expect(o['a2']).not.toEqual(o['a1']); // a new order each epoch
    expect(o['b1']).not.toEqual(o['a1']); // another file, another order
    expect(o['a1again']).toEqual(o['a1']); // the same file reads the same order, on any machine
    expect([o['cursor'], o['wraps']]).toEqual([200, 2]); // the cursor counts windows
    expect(o['seq']).toEqual([[3136, 3168, 0], 32, 1]); // file order: a token offset that wraps

    // A shard reports its data order and where the next round's stream continues.
    const { dir } = await trainedRound();
    const done = await readJson<Done>(join(dir, 'DONE.json'));
    expect(done.dataManifest).toMatchObject({ order: 'shuffled', cursor_start: 0, cursor_end: STEPS * BATCH });
    expect(done.nextCursor).toBe(STEPS * BATCH);
    const sequential = await makeRound('sequential', (sp) => {
      sp.train['data_order'] = 'sequential';
      sp.train.max_steps = 3;
    });
    expect((await runTrainer('--round-dir', sequential)).code).toBe(0);
    const seqDone = await readJson<Done>(join(sequential, 'DONE.json'));
    expect(seqDone.dataManifest).toMatchObject({ order: 'sequential', cursor_end: 3 * BATCH * SEQ });
  });

  it('under a time budget starts no step after S seconds of training; DONE.json\'s steps, tokens and busy span agree with progress.jsonl, whose ts increase', { timeout: 60_000 }, async () => {
    const budgetS = 1.5;
    const dir = await makeRound('budget-seconds', (s) => {
      delete s.train.max_steps;
      s.version = 2;
      s.budget = { seconds: budgetS };
    });
    const exit = await runTrainer('--round-dir', dir);
    expect(exit.code, exit.stderr).toBe(0);
    const done = await readJson<Done>(join(dir, 'DONE.json'));
    const lines = await progress(dir);
    expect(done.steps).toBeGreaterThan(2);
    expect(lines.map((l) => l.step)).toEqual(Array.from({ length: done.steps }, (_, i) => i + 1));
    expect(done).toMatchObject({ tokens: done.steps * BATCH * SEQ, samples: done.steps * BATCH, trainFinishedMs: lines.at(-1)!.ts });
    expect(lines.at(-1)!.tokens).toBe(done.tokens);
    for (const [i, l] of lines.entries()) if (i > 0) expect(l.ts).toBeGreaterThanOrEqual(lines[i - 1]!.ts);
    expect(lines.at(-1)!.ts).toBeGreaterThan(lines[0]!.ts);
    expect(done.trainStartedMs).toBeLessThanOrEqual(lines[0]!.ts);
    // Busy until the budget is spent, and no later than the step running then (plus scheduling slack).
    const busyMs = done.trainFinishedMs - done.trainStartedMs;
    const stepMs = busyMs / done.steps;
    expect(busyMs).toBeGreaterThanOrEqual(budgetS * 1000);
    expect(busyMs).toBeLessThan(budgetS * 1000 + 2 * stepMs + 500);
    // The last line's `steps` is the count reached: under a time budget it is the pace's estimate.
    expect(lines.at(-1)!.steps).toBe(done.steps);
  });

  it('under a token budget stops at the first step whose tokens reach T, less than one batch past it; max_steps caps it', { timeout: 60_000 }, async () => {
    const perStep = BATCH * SEQ; // 256 tokens a step
    const [byTokens, capped] = await Promise.all([
      makeRound('budget-tokens', (s) => {
        delete s.train.max_steps;
        s.budget = { tokens: 1000 };
      }),
      makeRound('budget-tokens-capped', (s) => {
        s.train.max_steps = 2;
        s.budget = { tokens: 1000 };
      }),
    ]);
    const exits = await Promise.all([runTrainer('--round-dir', byTokens), runTrainer('--round-dir', capped)]);
    for (const e of exits) expect(e.code, e.stderr).toBe(0);
    const done = await readJson<Done>(join(byTokens, 'DONE.json'));
    expect(done).toMatchObject({ steps: 4, tokens: 4 * perStep });
    expect(done.tokens).toBeGreaterThanOrEqual(1000);
    expect(done.tokens).toBeLessThan(1000 + perStep);
    expect((await progress(byTokens)).map((l) => [l.steps, l.tokens])).toEqual([1, 2, 3, 4].map((i) => [4, i * perStep]));
    expect(done.trainFinishedMs).toBeGreaterThanOrEqual(done.trainStartedMs);
    expect(await readJson<Done>(join(capped, 'DONE.json'))).toMatchObject({ steps: 2, tokens: 2 * perStep });
  });

  it('data.token_budget_scale (the benchmarks\' stand-in for a slower site) trains round(T × f) tokens by the same rule, never more than T', { timeout: 60_000 }, async () => {
    const perStep = BATCH * SEQ; // 256 tokens a step
    // T = 12 steps' tokens: a third is 4 steps, two thirds 8; 0.3 of it is 921.6 → 922 tokens → 4 steps.
    const budget = 12 * perStep;
    const scales = [1 / 3, 2 / 3, 0.3, 1];
    const dirs = await Promise.all(
      scales.map((f, i) =>
        makeRound(`budget-scale-${i}`, (s) => {
          delete s.train.max_steps;
          s.budget = { tokens: budget };
          s.data['token_budget_scale'] = f;
        }),
      ),
    );
    const exits = await Promise.all(dirs.map((d) => runTrainer('--round-dir', d)));
    for (const e of exits) expect(e.code, e.stderr).toBe(0);
    const done = await Promise.all(dirs.map((d) => readJson<Done>(join(d, 'DONE.json'))));
    expect(done.map((d) => [d.steps, d.tokens])).toEqual([4, 8, 4, 12].map((n) => [n, n * perStep]));
    // Progress lines plan the scaled steps.
    expect((await progress(dirs[0]!)).map((l) => l.steps)).toEqual([4, 4, 4, 4]);
  });

  it('exits 64 for a spec it cannot honour', { timeout: 60_000 }, async () => {
    const cases: [string, (s: Spec) => void, RegExp][] = [
      ['no-max-steps', (s) => delete s.train.max_steps, /train\.max_steps/],
      ['long-seq', (s) => (s.train.seq_len = 4096), /seq_len 4096 > max_position_embeddings 128/],
      ['no-data', (s) => (s.data.train_tokens = join(work, 'missing.u32')), /token file .*missing\.u32/],
      ['bad-dtype', (s) => (s.output_dtype = 'F8'), /output_dtype/],
      ['bad-order', (s) => (s.train['data_order'] = 'random'), /train\.data_order/],
      ['two-budgets', (s) => (s.budget = { seconds: 1, tokens: 100 }), /budget must be/],
      ['zero-seconds', (s) => (s.budget = { seconds: 0 }), /budget\.seconds/],
      ['newer-contract', (s) => (s.version = 3), /spec\.version/],
      ['scale-without-budget', (s) => (s.data['token_budget_scale'] = 0.5), /token_budget_scale scales a token budget/],
      [
        'scale-of-time-budget',
        (s) => {
          s.budget = { seconds: 1 };
          s.data['token_budget_scale'] = 0.5;
        },
        /token_budget_scale scales a token budget/,
      ],
      [
        'scale-above-one',
        (s) => {
          s.budget = { tokens: 1000 };
          s.data['token_budget_scale'] = 1.5;
        },
        /data\.token_budget_scale is missing or invalid/,
      ],
      [
        'decay-without-steps',
        (s) => {
          delete s.train.max_steps;
          s.budget = { seconds: 1 };
          s.train['decay_steps'] = 100;
        },
        /decay_steps needs a step count/,
      ],
    ];
    const dirs = await Promise.all(cases.map(([name, edit]) => makeRound(name, edit)));
    const exits = await Promise.all(dirs.map((d) => runTrainer('--round-dir', d)));
    exits.forEach((e, i) => {
      expect(e.code, e.stderr).toBe(64);
      expect(e.stderr).toMatch(cases[i]![2]);
      expect(existsSync(join(dirs[i]!, 'DONE.json'))).toBe(false);
    });
  });

  it('exits 65 for global weights of the wrong shape or hash, or a config that differs from the pinned one', { timeout: 60_000 }, async () => {
    const wide = { ...(await readJson<Record<string, unknown>>(join(TRAINERS, 'configs', 'tiny.json'))), intermediate_size: 160 };
    await writeFile(join(work, 'wide.json'), JSON.stringify(wide));
    const init = await runTrainer('--init', '--config', join(work, 'wide.json'), '--out', join(work, 'init-wide'), '--seed', '1');
    expect(init.code, init.stderr).toBe(0);
    const dirs = await Promise.all([
      makeRound('wrong-shape', undefined, join(work, 'init-wide', 'model.safetensors')),
      makeRound('wrong-sha', (s) => (s.global_sha256 = '0'.repeat(64))),
      makeRound('wrong-config', (s) => (s.model_config_sha256 = sha256('another tokenizer/config'))),
    ]);
    const exits = await Promise.all(dirs.map((d) => runTrainer('--round-dir', d)));
    const expected = [/mlp\.gate_proj\.weight has shape \[160, 64\], the config needs \[172, 64\]/, /SHA-256 differs from spec\.global_sha256/, /model_config_sha256/];
    exits.forEach((e, i) => {
      expect(e.code, e.stderr).toBe(65);
      expect(e.stderr).toMatch(expected[i]!);
    });
  });
});
