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
import { siteDataset, type SiteOptions } from '../site-agent/index.js';
import { DEMO_DATA, DEMO_MODEL_SEED } from './federation-files.js';

const exec = promisify(execFile);

/** The reference trainer and its tiny test configuration, beside the built or source tree. */
export const TORCH_TRAINER = fileURLToPath(new URL('../site-agent/trainers/torch_shard.py', import.meta.url));
export const TINY_CONFIG = fileURLToPath(new URL('../site-agent/trainers/configs/tiny.json', import.meta.url));

/** Training settings of a PyTorch shard in the demo (tiny model, CPU). */
export const TORCH_TRAIN = { max_steps: 30, lr: 3e-3, batch_size: 16, seq_len: 64 } as const;

export type JobRunnerKind = 'command' | 'slurm';

/** Writes the seeded initial model (`--init`); returns the model and its HF config.json. */
export async function torchInitialModel(dir: string, python: string): Promise<{ model: string; config: string }> {
  const out = join(dir, 'torch-init');
  const model = join(out, 'model.safetensors');
  const exists = await stat(model).then(() => true, () => false);
  if (!exists) await exec(python, [TORCH_TRAINER, '--init', '--config', TINY_CONFIG, '--out', out, '--seed', String(DEMO_MODEL_SEED)], { timeout: 120_000 });
  return { model, config: join(out, 'config.json') };
}

/** Writes a site's train and held-out text as little-endian uint32 token files. */
async function tokenFiles(dir: string, language: string, seed: number): Promise<{ train: string; heldout: string }> {
  await mkdir(dir, { recursive: true });
  const data = siteDataset({ language, ...DEMO_DATA, seed });
  const write = async (name: string, tokens: Uint8Array): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, Buffer.from(Uint32Array.from(tokens).buffer));
    return path;
  };
  return { train: await write('train.u32', data.train), heldout: await write('heldout.u32', data.heldout) };
}

/** The runner block of a site config that trains with torch_shard.py. */
export async function torchRunner(
  kind: JobRunnerKind,
  dir: string,
  language: string,
  seed: number,
  python: string,
  modelConfig: string,
): Promise<SiteOptions['runner']> {
  const tokens = await tokenFiles(join(dir, 'data'), language, seed);
  const shared = {
    data: { train_tokens: tokens.train },
    seed,
    modelConfig,
    keepOptimizerState: true,
    evalArgs: ['--eval', '--model', '{model}', '--config', '{modelConfig}', '--tokens', tokens.heldout, '--seq-len', String(TORCH_TRAIN.seq_len)],
  };
  if (kind === 'command') return { kind: 'command', command: [python, TORCH_TRAINER], ...shared };
  return { kind: 'slurm', partition: 'debug', timeLimit: '1', python, trainer: TORCH_TRAINER, pollIntervalMs: 500, ...shared };
}
