/**
 * The parts of `fedhpc export` a real run does not reach cheaply: a run that pinned nothing, a
 * journal that does not verify, a checkpoint whose bytes are not the committed hash, a Llama config
 * of other sizes, and the shard planner. The journal is written through the real `Journal`.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExportError, exportHf, verifyHfExport, type ExportHfOptions } from '../../../coordinator/index.js';
import { checkDescribes, llamaTensors, parseLlamaConfig } from '../../../coordinator/export/llama-config.js';
import { planShards } from '../../../coordinator/export/weights.js';
import { Journal } from '../../../coordinator/state/journal.js';
import { writeSeededModel } from '../../helpers/export-federation.js';

const TINY = resolve('site-agent/trainers/configs/tiny.json');
const sha = (b: string | Buffer): string => createHash('sha256').update(b).digest('hex');

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-export-unit-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** A state dir with one committed round of the tiny Llama; `pins` go into the run's train settings. */
async function stateDir(pins: Record<string, string> | undefined, dtype: 'F32' | 'BF16' = 'F32'): Promise<{ state: string; opts: (o?: Partial<ExportHfOptions>) => ExportHfOptions; checkpoint: string }> {
  const state = join(dir, 'state');
  await mkdir(join(state, 'models'), { recursive: true });
  const tmpModel = join(dir, 'model.safetensors');
  await writeSeededModel(tmpModel, llamaTensors(parseLlamaConfig(JSON.parse(await readFile(TINY, 'utf8')), TINY).shape), 3, dtype);
  const bytes = await readFile(tmpModel);
  const checkpoint = join(state, 'models', `${sha(bytes)}.safetensors`);
  await writeFile(checkpoint, bytes);
  const journal = await Journal.open(join(state, 'journal.jsonl'));
  const plan = { runId: 'r', rounds: 1, minSites: 1, expectedSites: [], deadlines: {}, maxAttempts: 3 };
  await journal.append({ type: 'run-started', runId: 'r', plan, strategy: { name: 'fedavg', lr: 1 }, weighting: 'samples', encoding: 'f32', train: pins ? { pins } : {}, initialModelSha256: '0'.repeat(64) });
  await journal.append({ type: 'round-committed', runId: 'r', round: 1, attempt: 0, participants: [], dropped: [], parentSha256: '0'.repeat(64), modelSha256: sha(bytes), strategy: { name: 'fedavg', lr: 1 }, serverStep: 1, bytesUp: 0, bytesDown: 0, startedMs: 0 });
  await journal.close();
  const tokenizer = join(dir, 'tok');
  await mkdir(tokenizer);
  await writeFile(join(tokenizer, 'tokenizer.json'), '{}');
  const opts = (o: Partial<ExportHfOptions> = {}): ExportHfOptions => ({ stateDir: state, round: 1, modelConfig: TINY, tokenizer, out: join(dir, 'out'), ...o });
  return { state, opts, checkpoint };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  const e: unknown = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(ExportError);
  return (e as ExportError).code;
}

describe('exportHf refusals outside a real run', () => {
  it('refuses a run that pinned no model config (EXPORT_NOT_PINNED)', async () => {
    const { opts } = await stateDir(undefined);
    await expect(codeOf(exportHf(opts()))).resolves.toBe('EXPORT_NOT_PINNED');
  });

  it('refuses a run that pinned the config but not the tokenizer (EXPORT_NOT_PINNED)', async () => {
    const { opts } = await stateDir({ modelConfigSha256: sha(await readFile(TINY)) });
    const e = await exportHf(opts()).catch((x: unknown) => x as ExportError);
    expect(e).toMatchObject({ code: 'EXPORT_NOT_PINNED', message: expect.stringContaining('pinned no tokenizer') as unknown });
  });

  it('refuses a checkpoint whose bytes are not the committed hash (EXPORT_CHECKPOINT_CORRUPT)', async () => {
    const { opts, checkpoint } = await stateDir({ modelConfigSha256: sha(await readFile(TINY)), tokenizerSha256: sha('{}') });
    const bytes = await readFile(checkpoint);
    bytes[bytes.length - 1]! ^= 1;
    await writeFile(checkpoint, bytes);
    await expect(codeOf(exportHf(opts()))).resolves.toBe('EXPORT_CHECKPOINT_CORRUPT');
  });

  it('refuses a journal whose chain does not verify, and a folder without one (EXPORT_STATE_INVALID)', async () => {
    const { opts, state } = await stateDir({ modelConfigSha256: sha(await readFile(TINY)), tokenizerSha256: sha('{}') });
    const file = join(state, 'journal.jsonl');
    await writeFile(file, (await readFile(file, 'utf8')).replace('"fedavg"', '"fedadam"'));
    await expect(codeOf(exportHf(opts()))).resolves.toBe('EXPORT_STATE_INVALID');
    await expect(codeOf(exportHf(opts({ stateDir: dir })))).resolves.toBe('EXPORT_STATE_INVALID');
  });

  it('refuses a shard limit that is not a positive integer (EXPORT_BAD_INPUT)', async () => {
    const { opts } = await stateDir({ modelConfigSha256: sha(await readFile(TINY)), tokenizerSha256: sha('{}') });
    await expect(codeOf(exportHf(opts({ shardLimitBytes: Number.NaN })))).resolves.toBe('EXPORT_BAD_INPUT');
  });

  it('exports a state dir whose run pinned both files', async () => {
    const { opts } = await stateDir({ modelConfigSha256: sha(await readFile(TINY)), tokenizerSha256: sha('{}') });
    const r = await exportHf(opts());
    expect(Object.keys(r.files).sort()).toEqual(['README.md', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json']);
    expect((await readdir(dir)).filter((n) => n.startsWith('.'))).toEqual([]); // the folder it was written in is gone
  });

  it('keeps a bf16 checkpoint\'s bytes by default and widens it exactly with --dtype f32', async () => {
    const { opts, checkpoint } = await stateDir({ modelConfigSha256: sha(await readFile(TINY)), tokenizerSha256: sha('{}') }, 'BF16');
    const kept = await exportHf(opts({ out: join(dir, 'kept') }));
    expect(kept.dtype).toBe('BF16');
    const exported = await readFile(join(dir, 'kept', 'model.safetensors'));
    expect(sha(exported)).toBe(sha(await readFile(checkpoint))); // same header and data: the checkpoint itself
    expect(JSON.parse(await readFile(join(dir, 'kept', 'config.json'), 'utf8'))).toMatchObject({ torch_dtype: 'bfloat16' });
    const wide = await exportHf(opts({ out: join(dir, 'wide'), dtype: 'f32' }));
    expect(wide.dtype).toBe('F32');
    expect(await verifyHfExport(join(dir, 'wide'), join(dir, 'state'))).toMatchObject({ ok: true, weightsChecked: true });
  });

  it('leaves nothing behind when the export fails while writing', async () => {
    const { opts } = await stateDir({ modelConfigSha256: sha(await readFile(TINY)), tokenizerSha256: sha('{}') });
    // A tokenizer_config.json that is a folder: the weights are written, then its copy fails.
    await mkdir(join(dir, 'tok', 'tokenizer_config.json'));
    const e: unknown = await exportHf(opts({ out: join(dir, 'new', 'out') })).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'EISDIR' });
    expect(await readdir(join(dir, 'new'))).toEqual([]);
  });
});

describe('the Llama config and the shard plan', () => {
  it('names the tensors a Llama of other sizes would need (EXPORT_MODEL_MISMATCH)', () => {
    const raw = JSON.parse('{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":256}') as Record<string, unknown>;
    const tensors = [...llamaTensors(parseLlamaConfig(raw, 'a').shape)].map(([name, shape]) => ({ name, shape }));
    const wider = parseLlamaConfig({ ...raw, intermediate_size: 256, num_hidden_layers: 3 }, 'b.json').shape;
    expect(() => checkDescribes(wider, tensors, 'b.json')).toThrow(/b\.json does not describe the checkpoint: model\.layers\.0\.mlp\.gate_proj\.weight is \[172, 64\], the config says \[256, 64\]/);
    expect(() => checkDescribes(parseLlamaConfig(raw, 'a').shape, tensors, 'a')).not.toThrow();
    expect(() => parseLlamaConfig({ ...raw, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }, 'g.json')).toThrow(/does not describe a Llama model/);
    expect(llamaTensors({ ...parseLlamaConfig(raw, 'a').shape, tied: true }).has('lm_head.weight')).toBe(false);
  });

  it('fills shards up to the limit in order, a tensor above it alone', () => {
    const t = (name: string, bytes: number) => ({ name, bytes });
    expect(planShards([t('a', 40), t('b', 50), t('c', 20), t('d', 250), t('e', 10)], 100)).toEqual([['a', 'b'], ['c'], ['d'], ['e']]);
    expect(planShards([t('a', 40), t('b', 60)], 100)).toEqual([['a', 'b']]);
  });
});
