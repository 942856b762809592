/**
 * Sites that train with the PyTorch reference trainer (`site-agent/trainers/torch_shard.py`)
 * through the `command` or `slurm` runner: a seeded initial model from `--init` and each site's
 * text as a token file (one token per character; the tiny config's vocabulary covers them).
 */
import { execFile } from 'node:child_process';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createRng, encodeText, generateText, type Language, siteDataset, type SiteOptions } from '../site-agent/index.js';
import { DEMO_DATA, DEMO_MODEL_SEED } from './demo.js';

const exec = promisify(execFile);

/** The reference trainer and its tiny test configuration, beside the built or source tree. */
export const TORCH_TRAINER = fileURLToPath(new URL('../site-agent/trainers/torch_shard.py', import.meta.url));
export const TINY_CONFIG = fileURLToPath(new URL('../site-agent/trainers/configs/tiny.json', import.meta.url));

/** Training settings of a PyTorch shard in the demo (tiny model, CPU). */
export const TORCH_TRAIN = { max_steps: 30, lr: 3e-3, batch_size: 16, seq_len: 64 } as const;

export type JobRunnerKind = 'command' | 'slurm';

const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false);

/**
 * Writes the seeded initial model (`--init`) unless a model is there already (a re-run, or a
 * benchmark's pretrained checkpoint); returns the model and its HF config.json.
 */
export async function torchInitialModel(dir: string, python: string): Promise<{ model: string; config: string }> {
  const out = join(dir, 'torch-init');
  const model = join(out, 'model.safetensors');
  if (!(await exists(model))) await exec(python, [TORCH_TRAINER, '--init', '--config', TINY_CONFIG, '--out', out, '--seed', String(DEMO_MODEL_SEED)], { timeout: 120_000 });
  return { model, config: join(out, 'config.json') };
}

async function writeTokens(path: string, tokens: ArrayLike<number>): Promise<string> {
  await writeFile(path, Buffer.from(Uint32Array.from(tokens).buffer));
  return path;
}

/**
 * Writes a site's train and held-out text as little-endian uint32 token files: its one language
 * (`DEMO_DATA`). Files already there are kept, as the initial model is: a re-run on the same folder
 * reads the same data, and a benchmark may write its own mix ({@link writeMixedSiteTokens}) first.
 */
async function tokenFiles(dir: string, language: string, seed: number): Promise<{ train: string; heldout: string }> {
  await mkdir(dir, { recursive: true });
  const train = join(dir, 'train.u32');
  const heldout = join(dir, 'heldout.u32');
  if ((await exists(train)) && (await exists(heldout))) return { train, heldout };
  const data = siteDataset({ language, ...DEMO_DATA, seed });
  return { train: await writeTokens(train, data.train), heldout: await writeTokens(heldout, data.heldout) };
}

/**
 * Characters per block of {@link mixedTokens}, like a short document: a shard's batch of 8
 * consecutive 64-token windows is one block, so each step sees one language.
 */
export const MIX_BLOCK_CHARS = 512;

/**
 * `chars` tokens whose blocks of `blockChars` each come from one language, drawn with
 * probabilities `weights` (one per language, summing to 1). Each language's text is its own
 * stream from `seed`, so blocks are consecutive sentences of that language, cut at block edges.
 */
export function mixedTokens(languages: readonly Language[], weights: readonly number[], chars: number, seed: number, blockChars = MIX_BLOCK_CHARS): Uint8Array {
  const pickRng = createRng(seed);
  const picks: number[] = [];
  const need = languages.map(() => 0);
  for (let at = 0; at < chars; at += blockChars) {
    let u = pickRng.next();
    let j = 0;
    while (j < languages.length - 1 && u >= weights[j]!) u -= weights[j++]!;
    picks.push(j);
    need[j]! += Math.min(blockChars, chars - at);
  }
  // A language's stream depends on (seed, language) only, not on how many blocks it got.
  const texts = languages.map((language, j) => (need[j]! > 0 ? encodeText(generateText(language, need[j]!, createRng(seed * 16 + j + 1))) : new Uint8Array()));
  const used = languages.map(() => 0);
  const out = new Uint8Array(chars);
  picks.forEach((j, b) => {
    const n = Math.min(blockChars, chars - b * blockChars);
    out.set(texts[j]!.subarray(used[j]!, used[j]! + n), b * blockChars);
    used[j]! += n;
  });
  return out;
}

/** A site's language weights: `share` for its own language (index `own`), the rest split evenly. */
export function dominantMix(languages: number, own: number, share: number): number[] {
  return Array.from({ length: languages }, (_, j) => (j === own ? share : (1 - share) / (languages - 1)));
}

/**
 * Writes a site's train and held-out token files (`DEMO_DATA` sizes) where {@link torchRunner}
 * reads and keeps them (`<siteDir>/data/`), mixing `languages` with `weights`. The held-out text is
 * the site's own mix from other seeds than its training text. Returns both token arrays.
 */
export async function writeMixedSiteTokens(
  siteDir: string,
  languages: readonly Language[],
  weights: readonly number[],
  seed: number,
): Promise<{ train: Uint8Array; heldout: Uint8Array }> {
  const dir = join(siteDir, 'data');
  await mkdir(dir, { recursive: true });
  const train = mixedTokens(languages, weights, DEMO_DATA.trainChars, seed * 2);
  const heldout = mixedTokens(languages, weights, DEMO_DATA.heldoutChars, seed * 2 + 1);
  await writeTokens(join(dir, 'train.u32'), train);
  await writeTokens(join(dir, 'heldout.u32'), heldout);
  return { train, heldout };
}

/** The runner block of a site config that trains with torch_shard.py; `data`: extra spec.json `data` fields. */
export async function torchRunner(
  kind: JobRunnerKind,
  dir: string,
  language: string,
  seed: number,
  python: string,
  modelConfig: string,
  data: Readonly<Record<string, unknown>> = {},
): Promise<SiteOptions['runner']> {
  const tokens = await tokenFiles(join(dir, 'data'), language, seed);
  const shared = {
    data: { ...data, train_tokens: tokens.train },
    seed,
    modelConfig,
    keepOptimizerState: true,
    evalArgs: ['--eval', '--model', '{model}', '--config', '{modelConfig}', '--tokens', tokens.heldout, '--seq-len', String(TORCH_TRAIN.seq_len)],
  };
  if (kind === 'command') return { kind: 'command', command: [python, TORCH_TRAINER], ...shared };
  return { kind: 'slurm', partition: 'debug', timeLimit: '1', python, trainer: TORCH_TRAINER, pollIntervalMs: 500, ...shared };
}
