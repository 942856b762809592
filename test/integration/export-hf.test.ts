/**
 * `fedhpc export --format hf` and `fedhpc export verify` on the state dir of a short real
 * federation (test/helpers/export-federation.ts): two secure rounds of a Llama-shaped model (the
 * tiny config torch_shard.py trains), retention keeping the last checkpoint only, so round 1 is
 * committed but removed and round 3 never committed. The export is read back by a strict numpy
 * reader written from the safetensors specification, and by torch_shard.py from config.json alone.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExportError, exportHf, verifyHfExport, type ExportHfOptions } from '../../coordinator/index.js';
import { llamaTensors, parseLlamaConfig } from '../../coordinator/export/llama-config.js';
import { CLI } from '../helpers/federation.js';
import { runExportFederation, writePinned, writeSeededModel } from '../helpers/export-federation.js';
import { TORCH_PYTHON, torchAvailable } from '../unit/trainers/require-torch.js';

const exec = promisify(execFile);
const TINY = resolve('site-agent/trainers/configs/tiny.json');
const FIXTURES = resolve('test/fixtures/export');

interface Setup {
  tmp: string;
  stateDir: string;
  tokenizer: string;
  pins: { modelConfigSha256: string; tokenizerSha256: string };
  cleanup: () => Promise<void>;
}

/** Runs `fedhpc export …`; resolves with the exit code and output (a refusal is not a rejection). */
async function fedhpc(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return exec(process.execPath, [CLI, ...args], { timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** Pinned files and a run whose model is the tiny Llama; `initialModel` overrides it (the builtin model when null). */
async function setup(o: { rounds: number; secure: boolean; llama: boolean; retention?: { keepLast: number; keepEvery: number } }): Promise<Setup> {
  const tmp = await mkdtemp(join(tmpdir(), 'fedhpc-export-'));
  const tokenizer = join(tmp, 'tokenizer');
  await mkdir(tokenizer);
  const tokenizerSha256 = await writePinned(join(tokenizer, 'tokenizer.json'), '{"version":"1.0","model":{"type":"BPE","vocab":{"a":0}}}\n');
  await writeFile(join(tokenizer, 'tokenizer_config.json'), '{"bos_token":"<s>","eos_token":"</s>"}\n');
  const modelConfigSha256 = await writePinned(join(tmp, 'config.json'), await readFile(TINY, 'utf8'));
  const pins = { modelConfigSha256, tokenizerSha256 };
  const shape = parseLlamaConfig(JSON.parse(await readFile(TINY, 'utf8')), TINY).shape;
  const run = await runExportFederation({
    rounds: o.rounds,
    ...(o.llama ? { initialModel: (p: string) => writeSeededModel(p, llamaTensors(shape), 7) } : {}),
    run: { train: { steps: 20, batchSize: 32, lr: 0.01, pins }, ...(o.secure ? {} : { secureAggregation: { enabled: false } }) },
    ...(o.retention ? { retention: o.retention } : {}),
  });
  return { tmp, stateDir: run.stateDir, tokenizer, pins, cleanup: async () => (await run.cleanup(), await rm(tmp, { recursive: true, force: true })) };
}

/** The committed checkpoint of the run's last round. */
async function lastCheckpoint(stateDir: string): Promise<string> {
  const journal = (await readFile(join(stateDir, 'journal.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { body: { type: string; modelSha256?: string } });
  const sha = journal.filter((r) => r.body.type === 'round-committed').at(-1)!.body.modelSha256!;
  return join(stateDir, 'models', `${sha}.safetensors`);
}

async function refusal(o: ExportHfOptions): Promise<ExportError> {
  const e: unknown = await exportHf(o).then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(ExportError);
  return e as ExportError;
}

describe('fedhpc export --format hf (a Llama-shaped run)', () => {
  let s: Setup;
  const args = (out: string, more: string[] = []): string[] =>
    ['export', '--state-dir', s.stateDir, '--round', '2', '--format', 'hf', '--model-config', join(s.tmp, 'config.json'), '--tokenizer', s.tokenizer, '--out', out, ...more];
  const opts = (out: string, more: Partial<ExportHfOptions> = {}): ExportHfOptions => ({ stateDir: s.stateDir, round: 2, modelConfig: join(s.tmp, 'config.json'), tokenizer: s.tokenizer, out, ...more });

  beforeAll(async () => {
    s = await setup({ rounds: 2, secure: true, llama: true, retention: { keepLast: 1, keepEvery: 0 } });
  }, 90_000);
  afterAll(() => s?.cleanup());

  it('writes the committed model, config, tokenizer and a card that a strict reader reads back bit for bit in f32', async () => {
    const out = join(s.tmp, 'f32');
    const r = await fedhpc(args(out, ['--json']));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { ok: boolean; dtype: string; files: Record<string, string> };
    expect(result).toMatchObject({ ok: true, dtype: 'F32' });
    expect((await readdir(out)).sort()).toEqual(['README.md', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect(Object.keys(result.files).sort()).toEqual((await readdir(out)).sort());
    const read = await exec('python3', [join(FIXTURES, 'strict_safetensors.py'), out, await lastCheckpoint(s.stateDir), 'f32']);
    expect(JSON.parse(read.stdout)).toMatchObject({ files: ['model.safetensors'], tensors: 21 });
    const card = await readFile(join(out, 'README.md'), 'utf8');
    for (const want of ['test-run', 'secure aggregation', '"threshold"', 'fedavg', s.pins.modelConfigSha256, s.pins.tokenizerSha256]) expect(card).toContain(want);
    const journal = await readFile(join(s.stateDir, 'journal.jsonl'), 'utf8');
    const head = (JSON.parse(journal.trim().split('\n').at(-1)!) as { hash: string }).hash;
    expect(card).toContain(head);
    // Every participant of rounds 1 and 2, with the data manifest it reported.
    const manifests = [...journal.matchAll(/"dataManifestSha256":"([0-9a-f]{64})"/g)].map((m) => m[1]!);
    expect(new Set(manifests).size).toBe(4);
    for (const m of manifests) expect(card).toContain(m);
    for (const [f, sha] of Object.entries(result.files)) if (f !== 'README.md') expect(card).toContain(`| ${f} | ${sha} |`);
    const v = await fedhpc(['export', 'verify', out, '--state-dir', s.stateDir, '--json']);
    expect(JSON.parse(v.stdout)).toEqual({ ok: true, runId: 'test-run', round: 2, issues: [], weightsChecked: true });
    expect(v.code).toBe(0);
  }, 60_000);

  it('writes a config.json holding every key transformers reads of a LlamaConfig, and generation_config.json', async () => {
    const out = join(s.tmp, 'config-keys');
    await exportHf(opts(out));
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    const { keys } = JSON.parse(await readFile(join(FIXTURES, 'llama-config-keys.json'), 'utf8')) as { keys: Record<string, string> };
    const typeOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v);
    for (const [key, type] of Object.entries(keys)) {
      const t = typeOf(config[key]);
      expect(type === t || (type === 'number' && t === 'integer') || (type === 'null-or-object' && (t === 'null' || t === 'object')), `${key}: ${t}, expected ${type}`).toBe(true);
    }
    const pinned = JSON.parse(await readFile(TINY, 'utf8')) as Record<string, unknown>;
    for (const [k, v] of Object.entries(pinned)) expect(config[k], k).toEqual(v);
    expect(config).toMatchObject({ architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float32', head_dim: 16 });
    expect(JSON.parse(await readFile(join(out, 'generation_config.json'), 'utf8'))).toEqual({ _from_model_config: true, bos_token_id: 1, eos_token_id: 2 });
  }, 30_000);

  it('writes bf16 as the checkpoint rounded to nearest-even (--dtype bf16)', async () => {
    const out = join(s.tmp, 'bf16');
    const r = await fedhpc(args(out, ['--dtype', 'bf16', '--json']));
    expect(r.code).toBe(0);
    expect(JSON.parse(await readFile(join(out, 'config.json'), 'utf8'))).toMatchObject({ torch_dtype: 'bfloat16' });
    const read = await exec('python3', [join(FIXTURES, 'strict_safetensors.py'), out, await lastCheckpoint(s.stateDir), 'bf16']);
    expect((JSON.parse(read.stdout) as { maxRelativeError: number }).maxRelativeError).toBeLessThanOrEqual(2 ** -8);
    expect((await verifyHfExport(out, s.stateDir)).ok).toBe(true);
  }, 30_000);

  it.skipIf(!torchAvailable().ok)('is loaded by torch_shard.py from config.json alone: f32 logits equal the checkpoint\'s bit for bit, bf16 within 2% of the largest', async () => {
    const run = async (dir: string): Promise<{ equal: boolean; maxAbsDiff: number; maxAbsLogit: number }> => {
      const r = await exec(TORCH_PYTHON, [join(FIXTURES, 'torch_logits.py'), resolve('site-agent/trainers'), dir, TINY, await lastCheckpoint(s.stateDir)], { timeout: 60_000 });
      return JSON.parse(r.stdout) as { equal: boolean; maxAbsDiff: number; maxAbsLogit: number };
    };
    const f32 = join(s.tmp, 'torch-f32');
    const bf16 = join(s.tmp, 'torch-bf16');
    await exportHf(opts(f32));
    await exportHf(opts(bf16, { dtype: 'bf16' }));
    expect(await run(f32)).toMatchObject({ equal: true, maxAbsDiff: 0 });
    const b = await run(bf16);
    expect(b.maxAbsDiff).toBeLessThanOrEqual(0.02 * b.maxAbsLogit);
  }, 60_000);

  it('shards a model above the shard limit, with an index the strict reader checks', async () => {
    const out = join(s.tmp, 'sharded');
    const r = await exportHf(opts(out, { shardLimitBytes: 100_000 }));
    const shards = Object.keys(r.files).filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThan(3);
    expect(r.files).toHaveProperty(['model.safetensors.index.json']);
    expect(r.files).not.toHaveProperty(['model.safetensors']);
    const read = await exec('python3', [join(FIXTURES, 'strict_safetensors.py'), out, await lastCheckpoint(s.stateDir), 'f32']);
    expect((JSON.parse(read.stdout) as { files: string[] }).files).toEqual(shards.sort());
    expect(await verifyHfExport(out, s.stateDir)).toMatchObject({ ok: true, weightsChecked: true });
  }, 30_000);

  it('export verify fails a changed weights file, an edited card, and weights changed with the card\'s hash to match', async () => {
    const out = join(s.tmp, 'tamper');
    await exportHf(opts(out));
    const model = join(out, 'model.safetensors');
    const original = await readFile(model);
    const changed = Buffer.from(original);
    changed[changed.length - 1]! ^= 0x01;
    await writeFile(model, changed);
    const v = await fedhpc(['export', 'verify', out, '--state-dir', s.stateDir]);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(/FAILED[\s\S]*model\.safetensors has another SHA-256 than the card says/);
    expect(v.stdout).toMatch(/tensor lm_head\.weight in model\.safetensors is not the checkpoint's/);

    await writeFile(model, original);
    const cardPath = join(out, 'README.md');
    const card = await readFile(cardPath, 'utf8');
    await writeFile(cardPath, card.replace('| 1 | site-1 |', '| 1 | site-9 |'));
    expect((await verifyHfExport(out, s.stateDir)).issues).toEqual(['README.md is not the card its provenance block renders: its text was edited']);

    // The tamperer rewrites the card's block and table for the new weights: the journal's checkpoint still says no.
    const { createHash } = await import('node:crypto');
    const oldSha = createHash('sha256').update(original).digest('hex');
    const newSha = createHash('sha256').update(changed).digest('hex');
    await writeFile(model, changed);
    await writeFile(cardPath, card.replaceAll(oldSha, newSha));
    const report = await verifyHfExport(out, s.stateDir);
    expect(report.ok).toBe(false);
    expect(report.issues).toEqual(['tensor lm_head.weight in model.safetensors is not the checkpoint\'s in F32']);
  }, 30_000);

  it('refuses a round retention removed (EXPORT_ROUND_REMOVED, exit 1, --json error)', async () => {
    const r = await fedhpc(['export', '--state-dir', s.stateDir, '--round', '1', '--format', 'hf', '--model-config', join(s.tmp, 'config.json'), '--tokenizer', s.tokenizer, '--out', join(s.tmp, 'r1'), '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, code: 'EXPORT_ROUND_REMOVED', message: expect.stringMatching(/round 1 of run test-run was committed.*retention removed it/) as unknown });
  }, 30_000);

  it('refuses an uncommitted round (EXPORT_ROUND_NOT_COMMITTED)', async () => {
    const r = await fedhpc(args(join(s.tmp, 'r3')).map((a) => (a === '2' ? '3' : a)));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('fedhpc export: EXPORT_ROUND_NOT_COMMITTED: round 3 of run test-run is not committed (the last committed round is 2)\n');
  }, 30_000);

  it('refuses a model config or tokenizer other than the run pinned (EXPORT_PIN_MISMATCH)', async () => {
    const other = join(s.tmp, 'other-config.json');
    await writeFile(other, (await readFile(TINY, 'utf8')).replace('"rms_norm_eps": 1e-5', '"rms_norm_eps": 1e-6'));
    const e = await refusal(opts(join(s.tmp, 'pin-1'), { modelConfig: other }));
    expect(e.code).toBe('EXPORT_PIN_MISMATCH');
    expect(e.message).toContain(`run test-run pinned ${s.pins.modelConfigSha256}`);
    const tok = join(s.tmp, 'other-tokenizer');
    await mkdir(tok);
    await writeFile(join(tok, 'tokenizer.json'), '{"version":"1.0","model":{"type":"BPE","vocab":{"b":0}}}\n');
    const t = await refusal(opts(join(s.tmp, 'pin-2'), { tokenizer: tok }));
    expect(t.code).toBe('EXPORT_PIN_MISMATCH');
    expect(t.context).toMatchObject({ what: 'tokenizer' });
  });

  it('refuses a non-empty --out (EXPORT_OUT_NOT_EMPTY) and leaves it as it was', async () => {
    const out = join(s.tmp, 'busy');
    await mkdir(out);
    await writeFile(join(out, 'notes.txt'), 'mine');
    const e = await refusal(opts(out));
    expect(e.code).toBe('EXPORT_OUT_NOT_EMPTY');
    expect(await readdir(out)).toEqual(['notes.txt']);
  });

  it('answers --help and refuses a usage mistake with exit 2', async () => {
    const h = await fedhpc(['export', '--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('fedhpc export verify DIR --state-dir DIR');
    const u = await fedhpc(['export', '--state-dir', s.stateDir, '--round', '2', '--format', 'gguf', '--json']);
    expect(u.code).toBe(2);
    expect(JSON.parse(u.stdout)).toMatchObject({ ok: false, code: 'USAGE', message: '--format must be hf (Hugging Face layout), got "gguf"' });
  }, 30_000);
});

describe('fedhpc export of a model the config does not describe', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup({ rounds: 1, secure: false, llama: false });
  }, 90_000);
  afterAll(() => s?.cleanup());

  it('refuses the builtin character model under a Llama config (EXPORT_MODEL_MISMATCH), writing nothing', async () => {
    const out = join(s.tmp, 'builtin');
    const e = await refusal({ stateDir: s.stateDir, round: 1, modelConfig: join(s.tmp, 'config.json'), tokenizer: s.tokenizer, out });
    expect(e.code).toBe('EXPORT_MODEL_MISMATCH');
    expect(e.message).toMatch(/does not describe the checkpoint: it holds none of LlamaForCausalLM's tensors \(it has embed\.weight, /);
    expect(await readdir(out).catch(() => 'absent')).toBe('absent');
  });
});
