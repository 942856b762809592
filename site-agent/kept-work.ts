/**
 * Missed work, kept on disk (issue 16; docs/protocol.md, "Bases, staleness and folded work"): a
 * delta this site trained whose upload could not count in its own round (the attempt closed to it,
 * its deadline passed, a newer task came) waits here to be folded into a later upload.
 *
 * Layout, under `<workDir>/kept/`, one piece of work per base (work is identified by (site, base);
 * newer work from the same base replaces older), named by the base's SHA-256:
 *
 *   <base>.delta.safetensors   Δ = local − base, element by element in f32 (as the encoder computes
 *                              it), F32 tensors named and shaped as the task's: self-contained, so
 *                              the base model need not stay in the cache
 *   <base>.json                a {@link KeptRecord}: run, round and attempt it was trained for, the
 *                              base and the round that committed it (the task's `model_round`), its
 *                              samples, tokens and steps, and its state
 *
 * Both files are written atomically (temporary name, fsync, rename, fsync of the folder), the delta
 * before the record, so a record always names a complete delta; a restarted agent reads the records
 * back. States: `kept` → `folded-pending` (an accepted upload folded it; that round is not yet known
 * committed with it) → done (a committed round counted it: both files are removed). A
 * `folded-pending` part goes back to `kept` when the round that folded it committed without this
 * site, and stays foldable meanwhile: the coordinator refuses work it counted already
 * (`ALREADY_COUNTED`), so a crash between upload and commit can neither lose nor double-count it. A
 * part dropped (too stale, refused, superseded) is removed as well.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { openSafetensors, type SafetensorsFile } from '../aggregation/index.js';
import { AtomicFile, openFileSource, type FileSource } from '../common/files.js';
import type { Logger } from '../common/logger.js';
import { writeF32File } from './delta.js';
import type { TaskTensor } from './encode.js';
import { SiteAgentError } from './errors.js';
import type { Contribution } from './receipt.js';
import type { TrainResult } from './runners/runner.js';
import { allocationSchema } from './usage.js';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** What the upload a part was folded into was recorded under (its receipt names it; absent in records of older agents). */
const deltaSchema = z.object({ sha256, parts: z.array(z.object({ start: count, end: count, sha256 }).strict()).readonly() }).strict();
/** The upload that folded a part: what its receipt names (run, round, the model it trained on, its data manifest, its delta). */
const foldedInSchema = z.object({ runId: z.string(), round: count, attempt: count, parentSha256: sha256, dataManifestSha256: z.string(), delta: deltaSchema.optional() }).strict();

/** One record of `<workDir>/kept/`, version 1. */
const keptRecordSchema = z
  .object({
    version: z.literal(1),
    runId: z.string().min(1),
    round: count,
    attempt: count,
    baseModelSha256: sha256,
    /** The round that committed the base (the task's `model_round`; 0: the initial model). */
    baseModelRound: count,
    samples: count,
    tokens: count,
    steps: count,
    trainLoss: z.number().nullable(),
    dataManifestSha256: z.string(),
    state: z.enum(['kept', 'folded-pending']),
    foldedIn: foldedInSchema.optional(),
    keptAtMs: count,
    /** How the part's shard was allocated: its usage joins the receipt of the upload that folds it. */
    allocation: allocationSchema.optional(),
  })
  .strict();

/** A kept part's record as written to disk. */
export type KeptRecord = z.infer<typeof keptRecordSchema>;

/** A kept part: its record and where its delta lies. */
export interface KeptPart extends KeptRecord {
  readonly deltaPath: string;
}

/** Trained work whose upload did not count in its round, as the round job hands it over. */
export interface MissedWork {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly baseModelSha256: string;
  readonly baseModelRound: number;
  /** The base model file (the task's global model in the cache) and the trained local model. */
  readonly basePath: string;
  readonly result: TrainResult;
  readonly tensors: readonly TaskTensor[];
}

/** The folder of kept work under a site's work dir. */
export function keptWorkDir(workDir: string): string {
  return join(workDir, 'kept');
}

/** The kept work of one site; changes are written one at a time. */
export class KeptWork {
  private readonly byBase = new Map<string, KeptPart>();
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Opens `dir` (creating it) and reads it back. */
  static async open(dir: string, log: Logger): Promise<KeptWork> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const store = new KeptWork(dir, log);
    const found = await store.parts();
    if (found.length > 0) log.info({ parts: found.map(describe) }, 'kept work found');
    return store;
  }

  /**
   * Every kept part, the freshest base first, read afresh from the folder: the disk is the truth, so
   * work an operator deleted by hand is gone. A record that does not parse or names no delta is
   * removed, with a warning.
   */
  parts(): Promise<readonly KeptPart[]> {
    return this.serially(async () => {
      this.byBase.clear();
      for (const name of (await readdir(this.dir)).filter((n) => /^[0-9a-f]{64}\.json$/.test(n)).sort()) {
        const base = name.slice(0, 64);
        const part = await readPart(this.dir, base);
        if (part.ok) this.byBase.set(base, part.part);
        else {
          this.log.warn({ file: join(this.dir, name), why: part.why }, 'kept work unreadable: removed');
          await this.removeFiles(base);
        }
      }
      return [...this.byBase.values()].sort((a, b) => b.baseModelRound - a.baseModelRound || a.baseModelSha256.localeCompare(b.baseModelSha256));
    });
  }

  /** The contributions whose folded parts wait for their round's verdict (re-registered for receipts at start). */
  async pendingContributions(): Promise<Contribution[]> {
    const seen = new Map<string, Contribution>();
    for (const p of await this.parts()) {
      const f = p.foldedIn;
      if (p.state === 'folded-pending' && f) seen.set(`${f.runId}/${f.round}`, { runId: f.runId, round: f.round, parentSha256: f.parentSha256, dataManifestSha256: f.dataManifestSha256, delta: f.delta });
    }
    return [...seen.values()];
  }

  /** Keeps `w`: Δ = local − base written beside its record, replacing older work from the same base. */
  keep(w: MissedWork, signal: AbortSignal): Promise<KeptPart> {
    return this.serially(async () => {
      const base = w.baseModelSha256;
      const deltaPath = join(this.dir, `${base}.delta.safetensors`);
      await writeDifference(deltaPath, w.basePath, w.result.outPath, w.tensors, signal);
      const r = w.result;
      const record: KeptRecord = {
        version: 1,
        runId: w.runId,
        round: w.round,
        attempt: w.attempt,
        baseModelSha256: base,
        baseModelRound: w.baseModelRound,
        samples: r.samples,
        tokens: r.tokens,
        steps: r.steps,
        trainLoss: Number.isFinite(r.trainLoss) ? r.trainLoss : null,
        dataManifestSha256: r.dataManifestSha256,
        state: 'kept',
        keptAtMs: Date.now(),
        ...(r.allocation === undefined ? {} : { allocation: r.allocation }),
      };
      const part = await this.write(record);
      this.log.info({ kept: describe(part) }, 'missed work kept on disk: it is folded into a later upload');
      return part;
    });
  }

  /** An accepted upload folded `parts`: they wait for its round's verdict. */
  markFolded(parts: readonly KeptPart[], foldedIn: z.infer<typeof foldedInSchema>): Promise<void> {
    return this.serially(async () => {
      for (const p of parts) {
        const now = this.byBase.get(p.baseModelSha256);
        if (now) await this.write({ ...recordOf(now), state: 'folded-pending', foldedIn });
      }
    });
  }

  /**
   * The verdict on a round this site uploaded to: `counted` (its receipt was accepted: the committed
   * round holds its upload, folded parts included) removes the parts it folded; not counted (the
   * round committed without this site) makes them `kept` again, to fold once more.
   */
  settle(c: Contribution, counted: boolean): Promise<void> {
    return this.serially(async () => {
      for (const p of [...this.byBase.values()]) {
        const f = p.foldedIn;
        if (p.state !== 'folded-pending' || !f || f.runId !== c.runId || f.round !== c.round || f.parentSha256 !== c.parentSha256) continue;
        if (counted) {
          await this.removeFiles(p.baseModelSha256);
          this.log.info({ part: describe(p), round: c.round }, 'kept work done: counted in a committed round');
        } else {
          const { foldedIn: _, ...rest } = recordOf(p);
          await this.write({ ...rest, state: 'kept' });
          this.log.info({ part: describe(p), round: c.round }, 'the round that folded kept work committed without this site: kept to fold again');
        }
      }
    });
  }

  /** Drops `parts` for good (`why` is logged): too stale, refused, superseded, from another run. */
  drop(parts: readonly KeptPart[], why: string): Promise<void> {
    return this.serially(async () => {
      for (const p of parts) {
        if (!this.byBase.has(p.baseModelSha256)) continue;
        await this.removeFiles(p.baseModelSha256);
        this.log.info({ part: describe(p), why }, 'kept work dropped');
      }
    });
  }

  private async write(record: KeptRecord): Promise<KeptPart> {
    const file = await AtomicFile.create(this.dir);
    try {
      await file.write(Buffer.from(`${JSON.stringify(record)}\n`));
      await file.commit(join(this.dir, `${record.baseModelSha256}.json`));
    } catch (err) {
      await file.discard();
      throw err;
    }
    const part = { ...record, deltaPath: join(this.dir, `${record.baseModelSha256}.delta.safetensors`) };
    this.byBase.set(record.baseModelSha256, part);
    return part;
  }

  /** The record first: without it a delta is an orphan no one reads, and the next keep of that base overwrites it. */
  private async removeFiles(base: string): Promise<void> {
    this.byBase.delete(base);
    await rm(join(this.dir, `${base}.json`), { force: true });
    await rm(join(this.dir, `${base}.delta.safetensors`), { force: true });
  }

  private serially<T>(work: () => Promise<T>): Promise<T> {
    const next = this.tail.then(work, work);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/** A part in log lines: which work it is, not its numbers' noise. */
function describe(p: KeptRecord): Record<string, string | number> {
  return { runId: p.runId, round: p.round, baseModelRound: p.baseModelRound, base: p.baseModelSha256.slice(0, 12), samples: p.samples, tokens: p.tokens, state: p.state };
}

function recordOf(p: KeptPart): KeptRecord {
  const { deltaPath: _, ...record } = p;
  return record;
}

async function readPart(dir: string, base: string): Promise<{ ok: true; part: KeptPart } | { ok: false; why: string }> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(join(dir, `${base}.json`), 'utf8'));
  } catch (err) {
    return { ok: false, why: (err as Error).message };
  }
  const parsed = keptRecordSchema.safeParse(json);
  if (!parsed.success) return { ok: false, why: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
  if (parsed.data.baseModelSha256 !== base) return { ok: false, why: `the record names base ${parsed.data.baseModelSha256}` };
  const deltaPath = join(dir, `${base}.delta.safetensors`);
  try {
    const src = await openFileSource(deltaPath);
    await src.close();
  } catch (err) {
    return { ok: false, why: `no delta: ${(err as Error).message}` };
  }
  return { ok: true, part: { ...parsed.data, deltaPath } };
}

/** Writes Δ = local − base (f32, as the encoder computes it) of `tensors` to `path`. */
async function writeDifference(path: string, basePath: string, localPath: string, tensors: readonly TaskTensor[], signal: AbortSignal): Promise<void> {
  const sources: FileSource[] = [];
  try {
    const open = async (p: string): Promise<SafetensorsFile> => {
      const src = await openFileSource(p);
      sources.push(src);
      return openSafetensors(src);
    };
    const base = await open(basePath);
    const local = await open(localPath);
    for (const t of tensors) {
      const l = local.tensors.find((x) => x.name === t.name);
      if (!l || l.shape.join() !== base.tensor(t.name).shape.join()) {
        throw new SiteAgentError('MODEL_INVALID', `local model's tensor ${t.name} is ${l ? `[${l.shape.join(', ')}]` : 'missing'}, the base's [${base.tensor(t.name).shape.join(', ')}]`, false);
      }
    }
    await writeF32File(path, tensors, async (name, first, n) => {
      const b = await base.readF32(name, first, n);
      const d = await local.readF32(name, first, n);
      for (let i = 0; i < n; i++) d[i] = d[i]! - b[i]!;
      return d;
    }, signal);
  } finally {
    for (const s of sources) await s.close();
  }
}
