/**
 * `fedhpc export --format hf`: the committed model of one round in Hugging Face layout, with a
 * model card of its provenance. Reads the state dir only (no coordinator, no credentials), so an
 * operator can run it on a copy. Refuses a round retention removed, an uncommitted round, a config
 * or tokenizer other than the run pinned, a config that does not describe the checkpoint, and an
 * `--out` that holds files.
 */
import { constants } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { openSafetensors, type FloatDtype } from '../../aggregation/index.js';
import { openFileSource, sha256File } from '../../common/files.js';
import { renderCard, CARD_FORMAT, type CardData } from './card.js';
import { ExportError } from './errors.js';
import { checkDescribes, generationConfigJson, hfConfigJson, parseLlamaConfig } from './llama-config.js';
import { provenanceOf, readStateJournal } from './provenance.js';
import { HF_SHARD_LIMIT_BYTES, writeWeights } from './weights.js';

/** Tokenizer files an export copies when the tokenizer folder has them; the first two may carry the pin. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'vocab.json', 'merges.txt'] as const;

/** What `fedhpc export --format hf` is asked. */
export interface ExportHfOptions {
  readonly stateDir: string;
  readonly round: number;
  /** The run (default: the one started last in the state dir). */
  readonly runId?: string | undefined;
  /** The model config (HF `config.json`) whose SHA-256 the run pinned. */
  readonly modelConfig: string;
  /** A folder of tokenizer files; its `tokenizer.json` (else `tokenizer.model`) is what the run pinned. */
  readonly tokenizer: string;
  readonly out: string;
  /** The weights' dtype; default: the checkpoint's. */
  readonly dtype?: 'f32' | 'bf16' | undefined;
  /** Largest tensor data per weights file (default 5 GB, as transformers); tests use a small one. */
  readonly shardLimitBytes?: number | undefined;
}

/** What an export wrote. */
export interface ExportHfResult {
  readonly out: string;
  readonly runId: string;
  readonly round: number;
  readonly dtype: string;
  /** SHA-256 of every file written, the card (`README.md`) included. */
  readonly files: Readonly<Record<string, string>>;
}

const DTYPES = { f32: 'F32', bf16: 'BF16' } as const satisfies Record<string, FloatDtype>;

/** Writes the export; throws {@link ExportError} for each refusal. */
export async function exportHf(o: ExportHfOptions): Promise<ExportHfResult> {
  if (!Number.isSafeInteger(o.round) || o.round < 1) throw new ExportError('EXPORT_BAD_INPUT', `the round must be an integer >= 1, got ${o.round}`);
  const limit = o.shardLimitBytes ?? HF_SHARD_LIMIT_BYTES;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new ExportError('EXPORT_BAD_INPUT', `the shard limit must be a positive integer of bytes, got ${limit}`);
  await checkOutEmpty(o.out);
  const records = await readStateJournal(o.stateDir);
  const prov = provenanceOf(records, o.round, o.runId);
  const checkpoint = join(o.stateDir, 'models', `${prov.checkpointSha256}.safetensors`);
  if (!(await isFile(checkpoint))) {
    throw new ExportError('EXPORT_ROUND_REMOVED', `round ${o.round} of run ${prov.runId} was committed, but its checkpoint ${prov.checkpointSha256} is no longer in ${o.stateDir}: retention removed it (retention.keepLast / keepEvery keep the rounds an export may need)`, { round: o.round });
  }
  const modelConfigSha256 = await pinned('model config', prov.pins.modelConfigSha256, o.modelConfig, prov.runId);
  const tokenizerFiles = await tokenizerFilesOf(o.tokenizer);
  await pinned('tokenizer', prov.pins.tokenizerSha256, join(o.tokenizer, tokenizerFiles[0]!), prov.runId);
  const { shape, raw } = parseLlamaConfig(await readJson(o.modelConfig), o.modelConfig);
  invariantSha(await sha256File(checkpoint), prov.checkpointSha256, checkpoint);
  const src = await openFileSource(checkpoint);
  try {
    const file = await openSafetensors(src);
    checkDescribes(shape, file.tensors, o.modelConfig);
    const dtypes = [...new Set(file.tensors.map((t) => t.dtype))];
    const dtype: FloatDtype | undefined = o.dtype === undefined ? undefined : DTYPES[o.dtype];
    const shown = dtype ?? (dtypes.length === 1 ? dtypes[0]! : 'F32');
    // Written beside --out and renamed into place: a failed export leaves no half folder behind.
    const tmp = join(dirname(resolve(o.out)), `.${basename(resolve(o.out))}.export-${process.pid}-${randomBytes(4).toString('hex')}`);
    await mkdir(dirname(tmp), { recursive: true });
    await mkdir(tmp);
    try {
      await writeWeights(tmp, file, dtype, limit);
      const config = hfConfigJson(raw, shown as FloatDtype);
      await writeFile(join(tmp, 'config.json'), `${JSON.stringify(config, null, 2)}\n`, { flag: 'wx' });
      await writeFile(join(tmp, 'generation_config.json'), `${JSON.stringify(generationConfigJson(config), null, 2)}\n`, { flag: 'wx' });
      for (const f of tokenizerFiles) await copyFile(join(o.tokenizer, f), join(tmp, f), constants.COPYFILE_EXCL);
      const files = await hashFiles(tmp);
      const card: CardData = { format: CARD_FORMAT, ...prov, pins: { ...prov.pins, modelConfigSha256 }, dtype: shown, checkpointDtype: dtypes.join('+'), files };
      await writeFile(join(tmp, 'README.md'), renderCard(card), { flag: 'wx' });
      const cardSha256 = await sha256File(join(tmp, 'README.md'));
      await publish(tmp, o.out);
      return { out: o.out, runId: prov.runId, round: o.round, dtype: shown, files: { ...files, 'README.md': cardSha256 } };
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
  } finally {
    await src.close();
  }
}

/** Moves the finished export to `out`: an empty `out` is removed first (rmdir refuses one that gained files meanwhile). */
async function publish(tmp: string, out: string): Promise<void> {
  await rmdir(out).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return;
    if (e.code === 'ENOTEMPTY' || e.code === 'EEXIST') throw new ExportError('EXPORT_OUT_NOT_EMPTY', `--out ${out} gained files while the export was written`);
    throw e;
  });
  await rename(tmp, out);
}

/** SHA-256 of every file in `dir` but the card, by name (sorted). */
export async function hashFiles(dir: string): Promise<Record<string, string>> {
  const names = (await readdir(dir)).filter((n) => n !== 'README.md').sort();
  const out: Record<string, string> = {};
  for (const n of names) out[n] = await sha256File(join(dir, n));
  return out;
}

const isFile = (p: string): Promise<boolean> => stat(p).then((s) => s.isFile(), () => false);

async function checkOutEmpty(out: string): Promise<void> {
  const entries = await readdir(out).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [];
    throw new ExportError('EXPORT_BAD_INPUT', `--out ${out} is not a folder this process can read: ${e.message}`);
  });
  if (entries.length > 0) throw new ExportError('EXPORT_OUT_NOT_EMPTY', `--out ${out} is not empty (${entries.length} entries): an export writes into an empty or new folder only, so no old file passes for part of it`);
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new ExportError('EXPORT_BAD_INPUT', `${file} is not a readable JSON file: ${(e as Error).message}`);
  }
}

/** Checks `file` against the run's pin of `what`; returns its SHA-256. */
async function pinned(what: string, pin: string | null, file: string, runId: string): Promise<string> {
  if (!(await isFile(file))) throw new ExportError('EXPORT_BAD_INPUT', `the ${what} ${file} does not exist`);
  if (pin === null) {
    throw new ExportError('EXPORT_NOT_PINNED', `run ${runId} pinned no ${what} (run.train.pins), so nothing vouches that ${file} is what its sites trained with: pin it in the next run`);
  }
  const actual = await sha256File(file);
  if (actual !== pin) throw new ExportError('EXPORT_PIN_MISMATCH', `the ${what} ${file} has SHA-256 ${actual}; run ${runId} pinned ${pin}`, { what });
  return actual;
}

/** The tokenizer files of `dir` in {@link TOKENIZER_FILES}' order; the first is the pinned one. */
async function tokenizerFilesOf(dir: string): Promise<string[]> {
  const here = new Set(await readdir(dir).catch(() => {
    throw new ExportError('EXPORT_BAD_INPUT', `--tokenizer ${dir} is not a folder`);
  }));
  const files = TOKENIZER_FILES.filter((f) => here.has(f));
  if (files[0] !== 'tokenizer.json' && files[0] !== 'tokenizer.model') {
    throw new ExportError('EXPORT_BAD_INPUT', `--tokenizer ${dir} holds neither tokenizer.json nor tokenizer.model`);
  }
  return files;
}

function invariantSha(actual: string, expected: string, file: string): void {
  if (actual !== expected) throw new ExportError('EXPORT_CHECKPOINT_CORRUPT', `${file} has SHA-256 ${actual}, not the ${expected} the journal committed`);
}
