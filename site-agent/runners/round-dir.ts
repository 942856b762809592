/**
 * The round directory contract shared by the `command` and `slurm` runners (DESIGN.md, "Training
 * runners"; specified in docs/protocol.md, "The trainer contract"): the agent writes `spec.json`
 * and `global/`, the job appends `progress.jsonl`, writes `out/model.safetensors` and commits
 * `DONE.json` last. A shard is finished only when the exit code, `DONE.json` and the output's
 * names, shapes and SHA-256 all agree; this file checks the last two.
 */
import { accessSync, constants } from 'node:fs';
import { copyFile, link, mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { openSafetensors, type SafetensorsTensorInfo } from '../../aggregation/index.js';
import { AtomicFile, openFileSource, sha256File } from '../../common/files.js';
import { SiteAgentError } from '../errors.js';
import { readTrainBudget } from './budget.js';
import type { PersistentLaunch } from './persistent.js';
import type { TrainRequest, TrainResult } from './runner.js';

/**
 * The version of the trainer contract `spec.json` speaks. 1: a step count; 2: an optional
 * `budget` (seconds or tokens) beside or instead of `train.max_steps`, a `ts` on every progress
 * line, and the busy span (`trainStartedMs`, `trainFinishedMs`) in `DONE.json`.
 */
export const TRAINER_CONTRACT_VERSION = 2;

/** Exit codes of a training job (DESIGN.md): anything else is a crash. */
export const TRAINER_EXIT = { DONE: 0, BAD_SPEC: 64, BAD_GLOBAL: 65, RESUMABLE: 75 } as const;

/** A runner's site config is unusable: thrown when the runner is built, at agent start. */
export class RunnerConfigError extends Error {
  readonly code = 'RUNNER_CONFIG_INVALID';
  constructor(
    readonly runner: string,
    readonly issues: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(`${runner} runner: ${issues.join('; ')}`, options);
    this.name = 'RunnerConfigError';
  }
}

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex SHA-256');

/** Site-config fields both job runners put into `spec.json` and check `out/` against. */
export const shardSpecShape = {
  /** Opaque data fields copied into `spec.data` (e.g. `train_tokens`, `cursor`). */
  data: z.record(z.unknown()).default({}),
  /** Site seed; the shard's seed mixes in the round and attempt. */
  seed: z.number().int().min(0).max(2 ** 31 - 1).default(1),
  /** The dtype `out/model.safetensors` must have. */
  outputDtype: z.enum(['F32', 'BF16']).default('F32'),
  /** Model config placed beside the weights as `global/config.json` (its SHA-256 pinned in the spec). */
  modelConfig: z.string().optional(),
  /** Tokenizer file of this site's data; its SHA-256 must match the run's pin when there is one. */
  tokenizer: z.string().optional(),
  /** Keep the trainer's inner optimizer state across rounds, in `<workDir>/optimizer-state/`. */
  keepOptimizerState: z.boolean().default(false),
  /** How long to wait for `DONE.json` after a successful exit (shared filesystems publish late). */
  doneWaitMs: z.number().int().min(0).max(600_000).default(0),
  /** Interval between reads of `progress.jsonl`. */
  progressPollMs: z.number().int().min(50).max(60_000).default(500),
};
export type ShardSpecOptions = z.output<z.ZodObject<typeof shardSpecShape>>;

/** `DONE.json`, written by the job last. Unknown fields are kept for the logs, not checked. */
export const doneSchema = z
  .object({
    status: z.literal('done'),
    round: z.number().int().min(0).optional(),
    steps: z.number().int().min(0),
    tokens: z.number().int().min(0),
    samples: z.number().int().min(0),
    trainLoss: z.number().finite().optional(),
    dataManifestSha256: sha256Hex,
    outSha256: sha256Hex,
    nextCursor: z.number().int().min(0).optional(),
    /** Contract version 2: the start of the first step and the end of the last, Unix ms. */
    trainStartedMs: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    trainFinishedMs: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  })
  .passthrough()
  .refine((d) => d.trainStartedMs === undefined || d.trainFinishedMs === undefined || d.trainStartedMs <= d.trainFinishedMs, {
    message: 'trainStartedMs is after trainFinishedMs',
    path: ['trainFinishedMs'],
  });
export type DoneRecord = z.output<typeof doneSchema>;

function spec(req: TrainRequest, o: ShardSpecOptions, extra: Record<string, unknown>): Record<string, unknown> {
  const budget = readTrainBudget(req.train);
  // The budget travels once, at the top and checked; `train` is the rest of the run's settings.
  const train = Object.fromEntries(Object.entries(req.train).filter(([key]) => key !== 'budget'));
  return {
    version: TRAINER_CONTRACT_VERSION,
    run_id: req.runId,
    round: req.round,
    attempt: req.attempt,
    // Reproducible per (site, round, attempt); a resumed job reads the same spec, so the same seed.
    seed: (o.seed * 1_000_003 + req.round * 1009 + req.attempt) % 2 ** 31,
    global_sha256: req.globalSha256,
    output_dtype: o.outputDtype,
    ...(o.keepOptimizerState ? { keep_optimizer_state: '../optimizer-state' } : {}),
    ...(budget ? { budget } : {}),
    train,
    data: { ...o.data, ...extra },
  };
}

/** Writes `content` to `path` atomically (temp file, fsync, rename). */
export async function writeJsonAtomic(path: string, content: unknown): Promise<void> {
  const file = await AtomicFile.create(join(path, '..'));
  try {
    await file.write(Buffer.from(`${JSON.stringify(content, null, 2)}\n`));
    await file.commit(path);
  } catch (err) {
    await file.discard();
    throw err;
  }
}

/**
 * Lays out a fresh round directory: `global/` (hard link to the cached global model, a copy where
 * the link cannot be made, e.g. across filesystems), `scratch/`, `out/` and `spec.json`. Leftovers
 * of an earlier attempt (`DONE.json`, `out/`, `progress.jsonl`) are removed first.
 */
export async function prepareRoundDir(req: TrainRequest, o: ShardSpecOptions, dataExtra: Record<string, unknown> = {}): Promise<void> {
  readTrainBudget(req.train); // a malformed budget is refused before anything is laid out
  const dir = req.roundDir;
  await rm(join(dir, 'DONE.json'), { force: true });
  await rm(join(dir, 'progress.jsonl'), { force: true });
  await rm(join(dir, 'out'), { recursive: true, force: true });
  for (const sub of ['global', 'scratch', 'out']) await mkdir(join(dir, sub), { recursive: true });
  const model = join(dir, 'global', 'model.safetensors');
  await rm(model, { force: true });
  await link(req.globalPath, model).catch(() => copyFile(req.globalPath, model));
  const extra: Record<string, unknown> = { ...dataExtra };
  const specExtra: Record<string, unknown> = {};
  await checkPins(req, o);
  if (o.modelConfig !== undefined) {
    await copyFile(o.modelConfig, join(dir, 'global', 'config.json'));
    specExtra['model_config_sha256'] = await sha256File(o.modelConfig, req.signal);
  }
  await writeJsonAtomic(join(dir, 'spec.json'), { ...spec(req, o, extra), ...specExtra });
}

/**
 * Writes a persistent session's `spec.json` (docs/protocol.md, "The persistent trainer"): the
 * agent's fields and the job runner's own — seed, output dtype, data, and the model config copied
 * beside it as `config.json` with its SHA-256.
 */
export async function writeSessionSpec(launch: PersistentLaunch, o: Pick<ShardSpecOptions, 'seed' | 'outputDtype' | 'data' | 'modelConfig'>): Promise<void> {
  const extra: Record<string, unknown> = {};
  if (o.modelConfig !== undefined) {
    await copyFile(o.modelConfig, join(launch.dir, 'config.json'));
    extra['model_config_sha256'] = await sha256File(o.modelConfig);
  }
  await writeJsonAtomic(join(launch.dir, 'spec.json'), { ...launch.spec, seed: o.seed, output_dtype: o.outputDtype, data: { ...o.data }, ...extra });
}

/** Pins the run may set in `run.train.pins`: SHA-256 of the model config and the tokenizer. */
const pinsSchema = z
  .object({ modelConfigSha256: sha256Hex.optional(), tokenizerSha256: sha256Hex.optional() })
  .strict()
  .optional();

/**
 * Refuses, before anything trains, a site whose model config or tokenizer differs from what the
 * run pinned: its shard could not be summed with the others'. A permanent failure (SPEC_INVALID).
 */
export async function checkPins(req: TrainRequest, o: Pick<ShardSpecOptions, 'modelConfig' | 'tokenizer'>): Promise<void> {
  const parsed = pinsSchema.safeParse(req.train['pins']);
  if (!parsed.success) throw new SiteAgentError('SPEC_INVALID', `run.train.pins is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`, false);
  const pins = parsed.data;
  if (!pins) return;
  const check = async (pinned: string | undefined, file: string | undefined, what: string): Promise<void> => {
    if (pinned === undefined) return;
    if (file === undefined) throw new SiteAgentError('SPEC_INVALID', `the run pins the ${what} (${pinned}) but this site's runner names no ${what} file`, false);
    const actual = await sha256File(file, req.signal);
    if (actual !== pinned) {
      throw new SiteAgentError('SPEC_INVALID', `this site's ${what} ${file} has SHA-256 ${actual}, the run pins ${pinned}`, false, { what });
    }
  };
  await check(pins.modelConfigSha256, o.modelConfig, 'model config');
  await check(pins.tokenizerSha256, o.tokenizer, 'tokenizer');
}

/** Reads `DONE.json`; waits up to `waitMs` for it to appear. Expected outcomes return a result. */
export async function readDone(roundDir: string, waitMs: number, signal: AbortSignal): Promise<{ ok: true; value: DoneRecord } | { ok: false; issues: string[] }> {
  const path = join(roundDir, 'DONE.json');
  const deadline = Date.now() + waitMs;
  let text: string | undefined;
  for (;;) {
    text = await readFile(path, 'utf8').catch(() => undefined);
    if (text !== undefined || Date.now() >= deadline) break;
    await sleep(Math.min(250, Math.max(1, deadline - Date.now())), undefined, { signal });
  }
  if (text === undefined) return { ok: false, issues: [`${path} is missing`] };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { ok: false, issues: [`${path} is not JSON: ${(err as Error).message}`] };
  }
  const parsed = doneSchema.safeParse(json);
  if (!parsed.success) return { ok: false, issues: parsed.error.issues.map((i) => `${path}: ${i.path.join('.') || '(root)'}: ${i.message}`) };
  return { ok: true, value: parsed.data };
}

async function tensorsOf(path: string): Promise<readonly SafetensorsTensorInfo[]> {
  const src = await openFileSource(path);
  try {
    return (await openSafetensors(src)).tensors;
  } finally {
    await src.close();
  }
}

/** Compares names, shapes and dtype of `out` with the global model; returns the differences. */
export async function compareWithGlobal(globalPath: string, outPath: string, dtype: string): Promise<string[]> {
  let out: readonly SafetensorsTensorInfo[];
  try {
    out = await tensorsOf(outPath);
  } catch (err) {
    return [`${outPath} is not a readable safetensors file: ${(err as Error).message}`];
  }
  const global = new Map((await tensorsOf(globalPath)).map((t) => [t.name, t]));
  const issues: string[] = [];
  for (const t of out) {
    const g = global.get(t.name);
    if (g === undefined) issues.push(`tensor ${t.name} is not in the global model`);
    else if (g.shape.join('x') !== t.shape.join('x')) issues.push(`tensor ${t.name} has shape [${t.shape.join(', ')}], global [${g.shape.join(', ')}]`);
    if (t.dtype !== dtype) issues.push(`tensor ${t.name} is ${t.dtype}, expected ${dtype}`);
    global.delete(t.name);
  }
  for (const name of global.keys()) issues.push(`tensor ${name} is missing`);
  return issues.slice(0, 10);
}

/** What the agent saw in `progress.jsonl`: the fallbacks for what `DONE.json` leaves out. */
export interface ProgressSeen {
  readonly lastLoss: number | undefined;
  /** `ts` of the first and the last step line read (Unix ms). */
  readonly firstTs: number | undefined;
  readonly lastTs: number | undefined;
}

/**
 * Checks a job that exited 0: `DONE.json` is there and valid, the SHA-256 of
 * `out/model.safetensors` is the one it names, and names, shapes and dtype match the global
 * model. Returns the shard's result; throws a {@link SiteAgentError} saying which part disagrees.
 * The busy span is DONE.json's, else progress.jsonl's first and last `ts` (a version-1 trainer;
 * the first `ts` is then the end of the first step), else 0.
 */
export async function verifyShard(req: TrainRequest, o: ShardSpecOptions, seen: ProgressSeen): Promise<{ result: TrainResult; done: DoneRecord }> {
  const done = await readDone(req.roundDir, o.doneWaitMs, req.signal);
  if (!done.ok) {
    throw new SiteAgentError('TRAINING_FAILED', `the training job exited 0 without a valid DONE.json: ${done.issues.join('; ')}`, false, { roundDir: req.roundDir });
  }
  const d = done.value;
  if (d.round !== undefined && d.round !== req.round) {
    throw new SiteAgentError('TRAINING_FAILED', `DONE.json is for round ${d.round}, not ${req.round}`, false, { roundDir: req.roundDir });
  }
  const outPath = join(req.roundDir, 'out', 'model.safetensors');
  const present = await stat(outPath).then(
    (s) => s.isFile(),
    () => false,
  );
  if (!present) throw new SiteAgentError('TRAINING_FAILED', `DONE.json was written but ${outPath} is missing`, false, { roundDir: req.roundDir });
  const actual = await sha256File(outPath, req.signal);
  if (actual !== d.outSha256) {
    throw new SiteAgentError('MODEL_CHECKSUM', `out/model.safetensors has SHA-256 ${actual}, DONE.json says ${d.outSha256}`, true, {
      roundDir: req.roundDir,
      expected: d.outSha256,
      actual,
    });
  }
  const issues = await compareWithGlobal(req.globalPath, outPath, o.outputDtype);
  if (issues.length > 0) {
    throw new SiteAgentError('MODEL_INVALID', `out/model.safetensors does not match the global model: ${issues.join('; ')}`, false, { roundDir: req.roundDir });
  }
  const trainLoss = d.trainLoss ?? seen.lastLoss ?? 0;
  const [trainStartedMs, trainFinishedMs] = busySpan(d, seen);
  return {
    done: d,
    result: { outPath, samples: d.samples, tokens: d.tokens, steps: d.steps, trainLoss, dataManifestSha256: d.dataManifestSha256, trainStartedMs, trainFinishedMs },
  };
}

/** The busy span: DONE.json's, else progress.jsonl's first and last `ts`, else 0/0 (not known). */
function busySpan(d: DoneRecord, seen: ProgressSeen): [number, number] {
  if (d.trainStartedMs !== undefined && d.trainFinishedMs !== undefined) return [d.trainStartedMs, d.trainFinishedMs];
  if (seen.firstTs !== undefined && seen.lastTs !== undefined && seen.firstTs <= seen.lastTs) return [seen.firstTs, seen.lastTs];
  return [0, 0];
}

/** What an exit code means for the round (DESIGN.md). */
export type ExitOutcome = 'done' | 'bad-spec' | 'bad-global' | 'resumable' | 'crash';

export function exitOutcome(code: number | null): ExitOutcome {
  switch (code) {
    case TRAINER_EXIT.DONE:
      return 'done';
    case TRAINER_EXIT.BAD_SPEC:
      return 'bad-spec';
    case TRAINER_EXIT.BAD_GLOBAL:
      return 'bad-global';
    case TRAINER_EXIT.RESUMABLE:
      return 'resumable';
    default:
      return 'crash';
  }
}

/** The permanent error for exit 64 or 65, with the end of the job's log for the operator. */
export function refusalError(outcome: 'bad-spec' | 'bad-global', logTail: string, context: Record<string, string | number>): SiteAgentError {
  const [code, what] = outcome === 'bad-spec' ? (['SPEC_INVALID', 'refused spec.json (exit 64)'] as const) : (['MODEL_INVALID', 'refused the global weights (exit 65)'] as const);
  return new SiteAgentError(code, `the trainer ${what}${logTail ? `: ${logTail}` : ''}`, false, context);
}

/** The last `bytes` of a log file as one line, for error messages (empty when there is none). */
export async function tailOf(path: string, bytes = 600): Promise<string> {
  const handle = await open(path, 'r').catch(() => undefined);
  if (!handle) return '';
  try {
    const { size } = await handle.stat();
    const length = Math.min(bytes, size);
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, size - length);
    return buf.toString('utf8').trim().split('\n').slice(-6).join(' | ');
  } finally {
    await handle.close();
  }
}

const progressLine = z
  .object({
    step: z.number().int().min(0),
    loss: z.number(),
    steps: z.number().int().positive().optional(),
    ts: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  })
  .passthrough();
/** A line whose loss is null (not a number) still says when its step ended. */
const stepTime = z.object({ ts: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }).passthrough();

/**
 * Follows `progress.jsonl` by reading what was appended since the last read, at a bounded interval
 * (polling works on NFS and Lustre, where inotify sees nothing written on another node). Each
 * complete line is forwarded through `onProgress`; a torn last line waits for its newline and a
 * malformed one is skipped.
 */
export class ProgressTail implements ProgressSeen {
  private offset = 0;
  private rest = '';
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<void> = Promise.resolve();
  private stopped = false;
  /** Loss of the last line read. */
  lastLoss: number | undefined;
  /** `ts` of the first and the last line read since the file was (re)started (Unix ms). */
  firstTs: number | undefined;
  lastTs: number | undefined;

  constructor(
    private readonly path: string,
    private readonly steps: number | undefined,
    private readonly onProgress: TrainRequest['onProgress'],
    private readonly intervalMs: number,
  ) {}

  /** Starts polling (the next read is scheduled once the last one is done); ends on `stop()` or abort. */
  start(signal: AbortSignal): this {
    const tick = (): void => {
      this.reading = this.read()
        .catch(() => undefined)
        .then(() => {
          if (!this.stopped && !signal.aborted) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.intervalMs);
    return this;
  }

  /** Stops polling after a last read of what the job wrote. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.reading;
    await this.read().catch(() => undefined);
  }

  private async read(): Promise<void> {
    const handle = await open(this.path, 'r').catch(() => undefined);
    if (!handle) return;
    try {
      const { size } = await handle.stat();
      if (size < this.offset) {
        this.offset = 0; // truncated by a resumed trainer: read it again
        this.rest = '';
        this.firstTs = this.lastTs = undefined;
      }
      // Bounded reads: at most 1 MiB per tick however fast the job writes.
      const length = Math.min(size - this.offset, 1 << 20);
      if (length <= 0) return;
      const buf = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buf, 0, length, this.offset);
      this.offset += bytesRead;
      const lines = (this.rest + buf.subarray(0, bytesRead).toString('utf8')).split('\n');
      this.rest = lines.pop() ?? '';
      for (const line of lines) this.forward(line);
    } finally {
      await handle.close();
    }
  }

  private forward(line: string): void {
    if (line.trim() === '') return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      return;
    }
    const time = stepTime.safeParse(json);
    if (time.success) {
      this.firstTs ??= time.data.ts;
      this.lastTs = Math.max(this.lastTs ?? 0, time.data.ts);
    }
    const p = progressLine.safeParse(json);
    if (!p.success) return;
    this.lastLoss = p.data.loss;
    this.onProgress({ step: p.data.step, steps: p.data.steps ?? this.steps ?? Math.max(p.data.step, 1), loss: p.data.loss });
  }
}

/** The step count a run's training settings name (`max_steps`, or `steps`), if any. */
export function plannedSteps(train: Readonly<Record<string, unknown>>): number | undefined {
  const v = train['max_steps'] ?? train['steps'];
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
}

/** Finds `program` the way `execvp` would: a path with a slash as is, else on `PATH`. */
export function findExecutable(program: string, path: string | undefined, cwd: string): string | undefined {
  const candidates = program.includes('/') ? [isAbsolute(program) ? program : resolve(cwd, program)] : (path ?? '').split(delimiter).filter(Boolean).map((d) => join(d, program));
  return candidates.find((c) => {
    try {
      accessSync(c, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
