import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { memorySource, openSafetensors } from '../../../aggregation/index.js';
import { ProgressTail, prepareRoundDir, readDone, shardSpecShape, TRAINER_CONTRACT_VERSION, TRAINER_EXIT } from '../../../site-agent/runners/round-dir.js';
import { z } from 'zod';
import type { TrainProgress } from '../../../site-agent/runners/runner.js';
import { TORCH_PYTHON, torchAvailable } from './require-torch.js';
import { PYTHON, ROOT, SLURM_DIR, TIMEOUT_MS, py, pyJson, type Refused } from './round-dir-python.js';

// deploy/slurm/fedhpc_round_dir.py is the trainer's side of the round-directory contract, shared by
// the reference trainer (torch_shard.py) and the NeMo recipe (nemo_shard.py). Here it is run on its
// own (standard library only, no torch) and its files are read by the agent's own code
// (site-agent/runners/round-dir.ts): exit codes, refusals, progress lines, DONE.json, safetensors.
const MODULE = join(SLURM_DIR, 'fedhpc_round_dir.py');
const TORCH_SHARD = join(ROOT, 'site-agent', 'trainers', 'torch_shard.py');

const work = mkdtempSync(join(tmpdir(), 'fedhpc-round-dir-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));


const CONFIG = {
  architectures: ['LlamaForCausalLM'],
  hidden_size: 8,
  intermediate_size: 16,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  vocab_size: 32,
  max_position_embeddings: 64,
};

const SPEC = {
  round: 3,
  seed: 7,
  global_sha256: 'a'.repeat(64),
  train: { max_steps: 5, lr: 3e-4, batch_size: 8, seq_len: 32 },
  data: { train_tokens: 'tokens.u32' },
};

describe('fedhpc_round_dir.py (the trainers\' side of the round directory)', () => {
  it('compiles, and its exit codes are the agent\'s (TRAINER_EXIT)', () => {
    const compiled = spawnSync(PYTHON, ['-m', 'py_compile', MODULE], { encoding: 'utf8', timeout: TIMEOUT_MS, env: { ...process.env, PYTHONPYCACHEPREFIX: join(work, 'pycache') } });
    expect(compiled.stderr).toBe('');
    expect(compiled.status).toBe(0);
    const codes = pyJson<Record<string, number>>('print(json.dumps({"DONE": rd.EXIT_OK, "BAD_SPEC": rd.EXIT_BAD_SPEC, "BAD_GLOBAL": rd.EXIT_BAD_GLOBAL, "RESUMABLE": rd.EXIT_INTERRUPTED}))');
    expect(codes).toEqual(TRAINER_EXIT);
  });

  it('validate_spec reads the common fields and refuses a bad one with 64, naming it', () => {
    const out = pyJson<{ ok: Record<string, unknown>; micro1: number; abs: string; refused: (Refused | null)[] }>(`
spec = json.loads(sys.argv[1])
s = rd.validate_spec(spec, "/r")
ok = {k: getattr(s, k) for k in ("round", "seed", "max_steps", "micro_batch", "weight_decay", "warmup_steps", "grad_clip", "cursor", "tokens_path", "output_dtype")}
micro1 = rd.validate_spec(spec, "/r", micro_batch_default=1).micro_batch
abs_path = rd.validate_spec({**spec, "data": {"train_tokens": "/data/t.u32"}}, "/r").tokens_path
def edit(**kw):
    return lambda: rd.validate_spec({**spec, **kw}, "/r")
cases = [
    lambda: rd.validate_spec([], "/r"),
    edit(train={k: v for k, v in spec["train"].items() if k != "max_steps"}),
    edit(output_dtype="F8"),
    edit(train={**spec["train"], "lr": float("nan")}),
    edit(train={**spec["train"], "batch_size": True}),
    edit(data={"train_tokens": "t", "train_tokens_sha256": "abc"}),
    edit(global_sha256="0" * 63),
]
print(json.dumps({"ok": ok, "micro1": micro1, "abs": abs_path, "refused": [refusal(c) for c in cases]}))
`, [JSON.stringify(SPEC)]);
    expect(out.ok).toEqual({ round: 3, seed: 7, max_steps: 5, micro_batch: 8, weight_decay: 0, warmup_steps: 0, grad_clip: 1, cursor: 0, tokens_path: '/r/tokens.u32', output_dtype: 'F32' });
    expect(out.micro1).toBe(1);
    expect(out.abs).toBe('/data/t.u32');
    const expected = [/not a JSON object/, /train\.max_steps/, /spec\.output_dtype/, /train\.lr/, /train\.batch_size/, /data\.train_tokens_sha256/, /spec\.global_sha256/];
    out.refused.forEach((r, i) => {
      expect(r?.code).toBe(64);
      expect(r?.message).toMatch(expected[i]!);
    });
  });

  it('reads a version-2 budget: a token budget plans ceil(T / tokens a step) steps (capped by max_steps), a time budget none; a bad budget or a newer version is refused with 64', () => {
    const out = pyJson<{ plans: [number | null, number | null, number | null][]; allows: boolean[]; estimate: number; refused: (Refused | null)[] }>(`
spec = json.loads(sys.argv[1])
train = {k: v for k, v in spec["train"].items() if k != "max_steps"}
def plan(**kw):
    s = rd.validate_spec({**spec, **kw}, "/r")
    return [s.planned_steps, s.budget_seconds, s.budget_tokens]
time_s = rd.validate_spec({**spec, "version": 2, "train": train, "budget": {"seconds": 2}}, "/r")
print(json.dumps({
    "plans": [plan(), plan(version=2, train=train, budget={"tokens": 1000}), plan(budget={"tokens": 1000}),
              plan(version=2, train=train, budget={"seconds": 2.5}), plan(budget={"tokens": 256})],
    "allows": [rd.budget_allows(time_s, 0, 99.0), rd.budget_allows(time_s, 5, 1.99), rd.budget_allows(time_s, 5, 2.0)],
    "estimate": rd.planned_or_estimate(time_s, 10, 0.5),
    "refused": [refusal(lambda b=b: rd.validate_spec({**spec, "budget": b}, "/r"))
                for b in ({"seconds": 0}, {"tokens": 0}, {"tokens": 1.5}, {"seconds": 1, "tokens": 1}, {"minutes": 1}, [])]
               + [refusal(lambda: rd.validate_spec({**spec, "version": 3}, "/r")),
                  refusal(lambda: rd.validate_spec({**spec, "train": train}, "/r"))]}))
`, [JSON.stringify(SPEC)]);
    // SPEC: batch 8 x seq 32 = 256 tokens a step, max_steps 5.
    expect(out.plans).toEqual([
      [5, null, null],
      [4, null, 1000],
      [4, null, 1000],
      [null, 2.5, null],
      [1, null, 256],
    ]);
    expect(out.allows).toEqual([true, true, false]); // the first step always; none once 2 s are spent
    expect(out.estimate).toBe(40); // 10 steps in 0.5 s: 40 by the end of 2 s
    expect(out.refused.map((r) => r?.code)).toEqual([64, 64, 64, 64, 64, 64, 64, 64]);
    expect(out.refused[0]?.message).toMatch(/budget\.seconds/);
    expect(out.refused[3]?.message).toMatch(/budget must be/);
    expect(out.refused[6]?.message).toMatch(/spec\.version/);
    expect(out.refused[7]?.message).toMatch(/train\.max_steps/); // without a budget the step count is required
  });

  it('the agent writes spec.json version 2 with the run\'s budget at its top, which validate_spec reads', async () => {
    const dir = join(work, 'agent-spec');
    const global = join(work, 'agent-global.safetensors');
    writeFileSync(global, 'not read by prepareRoundDir');
    const options = z.object(shardSpecShape).parse({});
    const train = { max_steps: 50, lr: 3e-4, batch_size: 8, seq_len: 32, budget: { tokens: 1000 } };
    await prepareRoundDir({ runId: 'r', round: 2, attempt: 0, globalPath: global, globalSha256: 'a'.repeat(64), roundDir: dir, train, signal: AbortSignal.timeout(TIMEOUT_MS), onProgress: () => undefined }, options);
    const written = JSON.parse(readFileSync(join(dir, 'spec.json'), 'utf8')) as Record<string, unknown>;
    expect(written).toMatchObject({ version: TRAINER_CONTRACT_VERSION, budget: { tokens: 1000 }, train: { max_steps: 50, batch_size: 8 } });
    expect(written['train']).not.toHaveProperty('budget');
    const s = pyJson<{ version: number; planned: number }>(`
s = rd.validate_spec(rd.read_spec(sys.argv[1])[0], sys.argv[1])
print(json.dumps({"version": s.version, "planned": s.planned_steps}))`, [dir]);
    expect(s).toEqual({ version: 2, planned: 4 });
    await expect(
      prepareRoundDir({ runId: 'r', round: 2, attempt: 0, globalPath: global, globalSha256: 'a'.repeat(64), roundDir: dir, train: { ...train, budget: { hours: 1 } }, signal: AbortSignal.timeout(TIMEOUT_MS), onProgress: () => undefined }, options),
    ).rejects.toMatchObject({ code: 'SPEC_INVALID' });
  });

  it('load_config fills HF Llama defaults and refuses what fedhpc\'s Llama cannot represent with 65 (64 when asked)', () => {
    const dir = join(work, 'configs');
    mkdirSync(dir, { recursive: true });
    const write = (name: string, value: unknown): string => {
      writeFileSync(join(dir, name), JSON.stringify(value));
      return join(dir, name);
    };
    const good = write('good.json', CONFIG);
    const bad = [
      write('tied.json', { ...CONFIG, tie_word_embeddings: true }),
      write('bias.json', { ...CONFIG, attention_bias: true }),
      write('gpt2.json', { ...CONFIG, architectures: ['GPT2LMHeadModel'] }),
      write('heads.json', { ...CONFIG, num_attention_heads: 3 }),
      write('scaling.json', { ...CONFIG, rope_scaling: { type: 'linear', factor: 2 } }),
      write('list.json', [CONFIG]),
      join(dir, 'missing.json'),
    ];
    const out = pyJson<{ c: Record<string, unknown>; shapes: [string, number[]][]; refused: (Refused | null)[]; asSpec: Refused }>(`
paths = json.loads(sys.argv[1])
c = rd.load_config(paths[0])
shapes = [[n, list(s)] for n, s in rd.tensor_shapes(c).items()]
print(json.dumps({"c": c, "shapes": shapes, "refused": [refusal(lambda p=p: rd.load_config(p)) for p in paths[1:]],
                  "asSpec": refusal(lambda: rd.load_config(paths[1], rd.bad_spec))}))
`, [JSON.stringify([good, ...bad])]);
    expect(out.c).toMatchObject({ ...CONFIG, rope_theta: 10000, rms_norm_eps: 1e-6, initializer_range: 0.02 });
    expect(out.shapes[0]).toEqual(['model.embed_tokens.weight', [32, 8]]);
    expect(out.shapes.find(([n]) => n.endsWith('k_proj.weight'))?.[1]).toEqual([4, 8]); // 1 KV head of 4
    expect(out.shapes.at(-1)).toEqual(['lm_head.weight', [32, 8]]);
    const expected = [/tie_word_embeddings/, /attention_bias/, /LlamaForCausalLM/, /hidden_size % heads/, /rope_scaling/, /not a JSON object/, /missing\.json/];
    out.refused.forEach((r, i) => {
      expect(r?.code).toBe(65);
      expect(r?.message).toMatch(expected[i]!);
    });
    expect(out.asSpec.code).toBe(64);
  });

  it('safetensors_header writes a file the agent reads; check_safetensors_header refuses wrong shapes and overlapping data with 65', async () => {
    const path = join(work, 'model.safetensors');
    const out = pyJson<{ start: number; layout: Record<string, [string, number, number]>; refused: (Refused | null)[] }>(`
import struct
path = sys.argv[1]
shapes = rd.tensor_shapes(json.loads(sys.argv[2]))
head = rd.safetensors_header(shapes.items(), "BF16")
size = sum(rd.ITEM_BYTES["BF16"] * __import__("math").prod(s) for s in shapes.values())
with open(path, "wb") as f:
    f.write(head + bytes(size))
start, layout = rd.check_safetensors_header(path, shapes)
wrong = dict(shapes, **{"model.norm.weight": (9,)})
# Two tensors over the same bytes: each fits its shape and the file, together they overlap.
n, = struct.unpack("<Q", head[:8])
header = json.loads(head[8:8 + n])
header["lm_head.weight"]["data_offsets"] = header["model.embed_tokens.weight"]["data_offsets"]
text = json.dumps(header).encode()
with open(path + ".overlap", "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + bytes(size))
print(json.dumps({"start": start, "layout": layout, "refused": [
    refusal(lambda: rd.check_safetensors_header(path, wrong)),
    refusal(lambda: rd.check_safetensors_header(path + ".overlap", shapes)),
    refusal(lambda: rd.check_safetensors_header(path + ".missing", shapes))]}))
`, [path, JSON.stringify(CONFIG)]);
    const file = await openSafetensors(memorySource(readFileSync(path)));
    expect(file.tensors.map((t) => t.name)).toEqual(Object.keys(out.layout));
    expect(new Set(file.tensors.map((t) => t.dtype))).toEqual(new Set(['BF16']));
    for (const t of file.tensors) expect(t.byteOffset).toBe(out.start + out.layout[t.name]![1]);
    expect(out.start % 8).toBe(0);
    expect(out.refused.map((r) => r?.code)).toEqual([65, 65, 65]);
    expect(out.refused[0]?.message).toMatch(/model\.norm\.weight has shape \[8\], the config needs \[9\]/);
    expect(out.refused[1]?.message).toMatch(/overlaps/);
  });

  it('token_count and pinned_sha256 refuse a short file or another file than the pinned one with 64', () => {
    const tokens = join(work, 'tokens.u32');
    writeFileSync(tokens, new Uint8Array(new Uint32Array([1, 2, 3]).buffer));
    writeFileSync(join(work, 'short.u32'), new Uint8Array(6));
    const sha = createHash('sha256').update(readFileSync(tokens)).digest('hex');
    const out = pyJson<{ count: number; sha: string; refused: (Refused | null)[] }>(`
t = ${JSON.stringify(tokens)}
print(json.dumps({"count": rd.token_count(t), "sha": rd.pinned_sha256(t, ${JSON.stringify(sha)}), "refused": [
    refusal(lambda: rd.token_count(${JSON.stringify(join(work, 'short.u32'))})),
    refusal(lambda: rd.pinned_sha256(t, "0" * 64))]}))
`);
    expect(out.count).toBe(3);
    expect(out.sha).toBe(sha);
    expect(out.refused.map((r) => r?.code)).toEqual([64, 64]);
    expect(out.refused[0]?.message).toMatch(/6 bytes: not a uint32 token file/);
    expect(out.refused[1]?.message).toMatch(/differs from data\.train_tokens_sha256/);
  });

  it('progress lines are what the agent\'s ProgressTail reads; truncate_progress cuts back to a checkpoint and drops a torn line', async () => {
    const path = join(work, 'progress.jsonl');
    rmSync(path, { force: true });
    const r = py(`
path = ${JSON.stringify(path)}
for step in (1, 2, 3):
    rd.append_progress(path, step, 5, 2.0 / step, 8, 32)
with open(path, "a") as f:
    f.write('{"step": 4, "lo')  # killed mid-line
rd.truncate_progress(path, 2)  # resumed from the checkpoint at step 2
rd.append_progress(path, 3, 5, float("nan"), 8, 32)  # not a number: written as null
`);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l['step'], l['steps'], l['loss'], l['tokens']])).toEqual([
      [1, 5, 2, 256],
      [2, 5, 1, 512],
      [3, 5, null, 768],
    ]);
    const seen: TrainProgress[] = [];
    const tail = new ProgressTail(path, undefined, (p) => seen.push(p), 50);
    await tail.stop(); // one last read of the whole file
    expect(seen).toEqual([
      { step: 1, steps: 5, loss: 2 },
      { step: 2, steps: 5, loss: 1 },
    ]);
  });

  it('a StepClock\'s ts never decreases, progress_span reads the busy span back, and the agent\'s ProgressTail sees the same first and last ts', async () => {
    const path = join(work, 'progress-ts.jsonl');
    rmSync(path, { force: true });
    const out = pyJson<{ ts: number[]; span: [number, number, number[]]; started: number; elapsed: number }>(`
import time
path = sys.argv[1]
clock = rd.StepClock()
ts = []
for step in (1, 2, 3):
    clock.step_starts()
    time.sleep(0.02)
    ts.append(clock.now_ms())
    rd.append_progress(path, step, 3, 1.0 / step, 8, 32, ts=ts[-1])
resumed = rd.StepClock(started_ms=clock.started_ms, elapsed_s=clock.elapsed_s())
print(json.dumps({"ts": ts, "span": rd.progress_span(path), "started": clock.started_ms, "elapsed": resumed.elapsed_s()}))
`, [path]);
    expect(out.ts[1]! - out.ts[0]!).toBeGreaterThanOrEqual(19);
    expect(out.ts[2]! - out.ts[1]!).toBeGreaterThanOrEqual(19);
    expect(out.started).toBeLessThanOrEqual(out.ts[0]! - 19);
    expect(out.span).toEqual([out.ts[0], out.ts[2], [1, 0.5, 1 / 3]]);
    expect(out.elapsed).toBeGreaterThanOrEqual(0.06); // a resumed clock counts the training before it
    const tail = new ProgressTail(path, undefined, () => undefined, 50);
    await tail.stop();
    expect([tail.firstTs, tail.lastTs]).toEqual([out.ts[0], out.ts[2]]);
  });

  it('write_done writes a DONE.json the agent accepts, without trainLoss when the loss is unknown', async () => {
    const dirs = [join(work, 'done-loss'), join(work, 'done-no-loss')];
    const manifest = { path: 'tokens.u32', sha256: 'b'.repeat(64), tokens: 4096, format: 'uint32le' };
    const r = py(`
manifest = json.loads(${JSON.stringify(JSON.stringify(manifest))})
for d, loss in ((${JSON.stringify(dirs[0])}, 2.5), (${JSON.stringify(dirs[1])}, None)):
    os.makedirs(d, exist_ok=True)
    rd.write_done(d, 3, 5, 8, 32, loss, manifest, "c" * 64, "F32", {"nextCursor": 40}, span=(1000, 2500) if loss else None)
`);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const canonical = JSON.stringify(Object.fromEntries(Object.entries(manifest).sort(([a], [b]) => (a < b ? -1 : 1))));
    for (const [i, dir] of dirs.entries()) {
      expect(existsSync(join(dir, 'DONE.json.tmp'))).toBe(false);
      const done = await readDone(dir, 0, AbortSignal.timeout(TIMEOUT_MS));
      expect(done.ok, JSON.stringify(done)).toBe(true);
      if (!done.ok) continue;
      expect(done.value).toMatchObject({ status: 'done', round: 3, steps: 5, tokens: 5 * 8 * 32, samples: 40, outSha256: 'c'.repeat(64), nextCursor: 40, outDtype: 'F32' });
      expect(done.value.dataManifestSha256).toBe(createHash('sha256').update(canonical).digest('hex'));
      expect(done.value.trainLoss).toBe(i === 0 ? 2.5 : undefined);
      // Contract version 2: the busy span, left out when unknown.
      expect([done.value.trainStartedMs, done.value.trainFinishedMs]).toEqual(i === 0 ? [1000, 2500] : [undefined, undefined]);
    }
    expect(readFileSync(join(dirs[1]!, 'DONE.json'), 'utf8')).not.toContain('trainLoss');
  });

  it('Parser turns a usage error into exit 64 with the trainer\'s name', () => {
    const r = py('p = rd.Parser("some_trainer"); p.add_argument("--round-dir", required=True); p.parse_args([])');
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/some_trainer: the following arguments are required: --round-dir/);
  });
});

describe('how torch_shard.py finds fedhpc_round_dir.py', () => {
  it('fails with a clear message when it is installed alone, before importing torch', () => {
    const alone = join(work, 'alone');
    mkdirSync(alone, { recursive: true });
    copyFileSync(TORCH_SHARD, join(alone, 'torch_shard.py'));
    const r = spawnSync(PYTHON, [join(alone, 'torch_shard.py'), '--help'], { encoding: 'utf8', timeout: TIMEOUT_MS, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/ImportError: fedhpc_round_dir\.py .* copy it beside torch_shard\.py/);
  });

  it.skipIf(!torchAvailable().ok)('runs from the package layout (dist/: site-agent/trainers/ and deploy/slurm/) and from a copy beside the module', () => {
    const dist = join(work, 'dist');
    mkdirSync(join(dist, 'site-agent', 'trainers'), { recursive: true });
    mkdirSync(join(dist, 'deploy', 'slurm'), { recursive: true });
    copyFileSync(TORCH_SHARD, join(dist, 'site-agent', 'trainers', 'torch_shard.py'));
    copyFileSync(MODULE, join(dist, 'deploy', 'slurm', 'fedhpc_round_dir.py'));
    const beside = join(work, 'beside');
    mkdirSync(beside, { recursive: true });
    copyFileSync(TORCH_SHARD, join(beside, 'torch_shard.py'));
    copyFileSync(MODULE, join(beside, 'fedhpc_round_dir.py'));
    writeFileSync(join(work, 'tiny.json'), JSON.stringify({ ...CONFIG, rope_theta: 10000.0, rms_norm_eps: 1e-5, hidden_act: 'silu' }));
    for (const [i, trainer] of [join(dist, 'site-agent', 'trainers', 'torch_shard.py'), join(beside, 'torch_shard.py')].entries()) {
      const out = join(work, `init-${i}`);
      const r = spawnSync(TORCH_PYTHON, [trainer, '--init', '--config', join(work, 'tiny.json'), '--out', out, '--seed', '1'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
    }
  });
});
