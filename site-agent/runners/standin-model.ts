/**
 * The stand-in trainer's objective: a quadratic bowl per site, so a stand-in shard produces a real
 * local model that moves with the work done, at the cost of one pass over the weights. Site s wants
 * every coordinate i of tensor k at its target τ_s(k, i) = scale · (c(k, i) + h · u_s(k, i)), with
 * c shared by all sites and u_s its own (uniform in [−1, 1), from a counter hash: no table, any
 * model size). A step closes a share `pull` of the distance to the target, so n steps give, in
 * closed form, w' = τ + (w − τ)(1 − pull)^n; the loss is mean((w − τ)²) / scale². The federation's
 * weighted mean of such shards moves toward the sites' mean target: a loss that falls by rounds
 * and by work, with no gradient computed. It stands in for training; it is not a model of text.
 */
import { dirname } from 'node:path';
import { createSafetensorsWriter, isFloatDtype, openSafetensors, type SafetensorsFile } from '../../aggregation/index.js';
import { AtomicFile, openFileSource } from '../../common/files.js';
import { SiteAgentError } from '../errors.js';

/** The objective's settings (the stand-in runner's site config). */
export interface StandinObjective {
  /** This site's target: its seed. */
  readonly seed: number;
  /** Coordinates' scale of the targets. */
  readonly targetScale: number;
  /** How far the sites' targets differ, relative to their shared part (0: one target for all). */
  readonly heterogeneity: number;
}

/** Elements per read and write: 4 MiB of f32 at a time, whatever the model's size. */
const SLICE = 1 << 20;
const COMMON_SEED = 0x5eed_c0de;

/** lowbias32 (C. Wellons): a 32-bit finaliser that scatters every input bit. */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Entries of the two noise tables; a power of two, so an index wraps with a mask. */
const TABLE = 1 << 16;

/** A table of TABLE uniforms in [−1, 1) from `key` (lowbias32 of a Weyl sequence). */
function uniformTable(key: number): Float64Array {
  const t = new Float64Array(TABLE);
  for (let j = 0; j < TABLE; j++) t[j] = (mix32((key + Math.imul(j, 0x9e37_79b9)) >>> 0) - 2 ** 31) / 2 ** 31;
  return t;
}

/** The shared table, and each site's by seed: made once per process (512 KiB each). */
const tables = new Map<string, Float64Array>();
function tableOf(name: string, key: number): Float64Array {
  let t = tables.get(name);
  if (!t) tables.set(name, (t = uniformTable(key)));
  return t;
}

/**
 * Fills `out[j]` with τ(k, start + j) for j < out.length: c and u are two table entries, at offsets
 * that tensor k's keys choose — two loads and a multiply-add per coordinate, so writing a
 * 100 M-parameter model costs a stand-in a fraction of a second, not the seconds a hash per
 * coordinate did (that CPU is not the CPU a GPU trainer would spend).
 */
function targets(o: StandinObjective, k: number, start: number, out: Float64Array): void {
  const common = tableOf('common', COMMON_SEED);
  const own = tableOf(`site ${o.seed}`, mix32(o.seed + 0x9e37_79b9));
  const mask = TABLE - 1;
  const c0 = (mix32(COMMON_SEED ^ mix32(k + 1)) + start) & mask;
  const u0 = (mix32(mix32(o.seed + 0x9e37_79b9) ^ mix32(k + 0x10001)) + start) & mask;
  const h = o.heterogeneity;
  const scale = o.targetScale;
  for (let j = 0; j < out.length; j++) out[j] = scale * (common[(c0 + j) & mask]! + h * own[(u0 + j) & mask]!);
}

async function withModel<T>(path: string, use: (file: SafetensorsFile) => Promise<T>): Promise<T> {
  const src = await openFileSource(path);
  try {
    const file = await openSafetensors(src);
    const other = file.tensors.find((t) => !isFloatDtype(t.dtype));
    if (other) throw new SiteAgentError('MODEL_INVALID', `the stand-in trainer moves float tensors only; ${other.name} is ${other.dtype}`, false);
    return await use(file);
  } finally {
    await src.close();
  }
}

/**
 * The loss of `modelPath` at this site, over the first `elements` coordinates of every tensor:
 * mean((w − τ)²) / scale². Returns it and the coordinates scored.
 */
export function standinLoss(modelPath: string, o: StandinObjective, elements: number): Promise<{ loss: number; samples: number }> {
  return withModel(modelPath, async (file) => {
    let sum = 0;
    let count = 0;
    for (const [k, t] of file.tensors.entries()) {
      const n = Math.min(elements, t.elements);
      const w = await file.readF32(t.name, 0, n);
      const tau = new Float64Array(n);
      targets(o, k, 0, tau);
      for (let j = 0; j < n; j++) sum += (w[j]! - tau[j]!) ** 2;
      count += n;
    }
    return { loss: count === 0 ? 0 : sum / count / o.targetScale ** 2, samples: count };
  });
}

/**
 * Writes `outPath` (`dtype`, the names, shapes and metadata of `paths[0]`), atomically, from the
 * models at `paths` a slice at a time: `f` gets each one's values of the slice and the targets
 * there, and returns the slice's output values. One read of each input byte and one write of each
 * output byte, 4 MiB of buffers per input whatever the model's size.
 */
async function writeMapped(
  paths: readonly string[],
  outPath: string,
  o: StandinObjective,
  dtype: 'F32' | 'BF16',
  signal: AbortSignal,
  f: (values: Float32Array[], target: Float64Array) => Float32Array,
): Promise<void> {
  const sources = await Promise.all(paths.map((p) => openFileSource(p)));
  try {
    const files = await Promise.all(sources.map((src) => openSafetensors(src)));
    const other = files.flatMap((file) => file.tensors).find((t) => !isFloatDtype(t.dtype));
    if (other) throw new SiteAgentError('MODEL_INVALID', `the stand-in trainer moves float tensors only; ${other.name} is ${other.dtype}`, false);
    const first = files[0]!;
    const sink = await AtomicFile.create(dirname(outPath));
    try {
      const writer = await createSafetensorsWriter(sink, first.tensors.map((t) => ({ name: t.name, dtype, shape: t.shape })), first.metadata);
      const tau = new Float64Array(SLICE);
      for (const [k, t] of first.tensors.entries()) {
        for (let start = 0; start < t.elements; start += SLICE) {
          signal.throwIfAborted();
          const n = Math.min(SLICE, t.elements - start);
          const values = await Promise.all(files.map((file) => file.readF32(t.name, start, n)));
          const target = tau.subarray(0, n);
          targets(o, k, start, target);
          await writer.writeF32(t.name, f(values, target));
        }
      }
      await writer.finish();
      await sink.commit(outPath);
    } catch (err) {
      await sink.discard();
      throw err;
    }
  } finally {
    await Promise.all(sources.map((src) => src.close()));
  }
}

/** Writes the model after `steps` steps from `globalPath` to `outPath`: w' = τ + (w − τ)(1 − pull)^steps. */
export function writeStandinModel(globalPath: string, outPath: string, o: StandinObjective, pull: number, steps: number, signal: AbortSignal, dtype: 'F32' | 'BF16' = 'F32'): Promise<void> {
  const keep = (1 - pull) ** steps;
  return writeMapped([globalPath], outPath, o, dtype, signal, ([w], target) => {
    for (let j = 0; j < w!.length; j++) w![j] = target[j]! + (w![j]! - target[j]!) * keep;
    return w!;
  });
}

/**
 * A persistent stand-in's snapshot after it applied global `g` (α of the correction) to
 * parameters j steps past its last snapshot `s`, then took k more steps (docs/protocol.md, "The
 * persistent trainer"): w = τ + ρᵏ·(ρʲ·(s − τ) + α·(g − s)), ρ = 1 − pull — the closed form of j
 * steps, θ ← θ + α·(g − s), and k steps.
 */
export function writeStandinApplied(
  globalPath: string,
  snapshotPath: string,
  outPath: string,
  o: StandinObjective,
  m: { readonly pull: number; readonly before: number; readonly after: number; readonly alpha: number },
  signal: AbortSignal,
  dtype: 'F32' | 'BF16' = 'F32',
): Promise<void> {
  const keepAfter = (1 - m.pull) ** m.after;
  const keepBefore = (1 - m.pull) ** m.before;
  return writeMapped([globalPath, snapshotPath], outPath, o, dtype, signal, ([g, s], target) => {
    for (let j = 0; j < g!.length; j++) g![j] = target[j]! + keepAfter * (keepBefore * (s![j]! - target[j]!) + m.alpha * (g![j]! - s![j]!));
    return g!;
  });
}
