/**
 * The coordinator's durable state behind one interface: the journal, content-addressed model
 * checkpoints, optimizer state beside each checkpoint, and upload spools. `LocalStateStore` keeps
 * it in `--state-dir`; a JetStream-backed store (for a standby coordinator) implements the same.
 */
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { AtomicFile, StagedFile, fsyncDir, isSha256, openFileSource, pathExists, sha256File, type FileSource } from '../../common/files.js';
import { CoordinatorError } from '../core/errors.js';
import { Journal, type JournalBody, type JournalRecord } from './journal.js';

/** What the coordinator needs from durable state. */
export interface StateStore {
  /** The state dir: what aggregator shards are sent is relative to it (they reach it under their own path). */
  readonly dir: string;
  records(): readonly JournalRecord[];
  append<B extends { readonly type: string }>(body: B): Promise<JournalRecord<B & JournalBody>>;
  hasModel(sha256: string): Promise<boolean>;
  /** Opens checkpoint `sha256` for random-access reads. */
  openModel(sha256: string): Promise<FileSource>;
  /** Local path of a checkpoint, for streaming downloads. */
  modelPath(sha256: string): string;
  /** A new checkpoint file; `commit` names it by its content hash. */
  createModel(): Promise<PendingFile>;
  /** Whether state buffer `slot` (e.g. `momentum`) was saved beside checkpoint `modelSha256`. */
  hasOptimizerState(modelSha256: string, slot: string): Promise<boolean>;
  openOptimizerState(modelSha256: string, slot: string): Promise<FileSource>;
  /**
   * A new optimizer-state file; `commit(\`${modelSha256}.${slot}\`)` stores it beside that
   * checkpoint. Named by its checkpoint, so its bytes are not hashed.
   */
  createOptimizerState(): Promise<PendingNamedFile>;
  /**
   * A folder on the checkpoints' filesystem where a checkpoint's files are staged whole and written
   * in parts by aggregator shards before they are published (issue 22); emptied at start.
   */
  readonly stagingDir: string;
  /** Publishes a staged checkpoint file (complete and synced) under its SHA-256, which it reads to hash. */
  publishStagedModel(path: string, signal?: AbortSignal): Promise<{ sha256: string }>;
  /** Publishes a staged file as optimizer state `slot` of checkpoint `modelSha256`. */
  publishStagedOptimizerState(path: string, modelSha256: string, slot: string): Promise<void>;
  /** Folder for the upload spools of one round attempt (created on demand). */
  spoolDir(round: number, attempt: number): Promise<string>;
  /** The spool folders of `round`'s attempts that exist, by attempt. */
  spoolAttempts(round: number): Promise<{ attempt: number; dir: string }[]>;
  /**
   * Deletes the spools of every attempt but the kept ones: one attempt, or with `attempt` absent
   * every attempt of `round` (an interrupted plain round's uploads may serve its next attempt).
   */
  pruneSpools(keep?: { round: number; attempt?: number }): Promise<void>;
  close(): Promise<void>;
}

/** A file being written, published atomically once complete, or discarded. */
export interface StagedWrite {
  write(bytes: Uint8Array): Promise<void>;
  readonly bytesWritten: number;
  discard(): Promise<void>;
}

/** A content-addressed file being written (a checkpoint): published under its SHA-256, hashed as written. */
export interface PendingFile extends StagedWrite {
  commit(): Promise<{ sha256: string }>;
}

/** A file being written that its writer names (optimizer state beside a checkpoint): not hashed. */
export interface PendingNamedFile extends StagedWrite {
  commit(name: string): Promise<void>;
}


/** What the store needs of a journal: the state dir's file (`Journal`) or a replicated stream (`JetStreamJournal`). */
export interface JournalPort {
  records(): readonly JournalRecord[];
  append<B extends { readonly type: string }>(body: B): Promise<JournalRecord<B & JournalBody>>;
  close(): Promise<void>;
  /** Bytes of a torn last line cut off at open (a file journal only). */
  readonly repairedBytes?: number;
}

/**
 * Where checkpoint `sha256` lies under the state dir `dir`: for the store, and for an aggregator
 * shard reading the coordinator's checkpoint storage (issue 22). Throws `BAD_REQUEST` for a name
 * that is not a SHA-256.
 */
/** The spool folder of one round attempt under `dir`: `spool/round-R.A/`. */
export function spoolFolder(dir: string, round: number, attempt: number): string {
  return join(dir, 'spool', `round-${round}.${attempt}`);
}

/**
 * The spool folder of one round attempt under `dir` ({@link spoolFolder}), made if missing: the
 * coordinator's state dir, or an aggregator shard's (coordinator/shards/shard-uploads.ts).
 */
export async function spoolDirIn(dir: string, round: number, attempt: number): Promise<string> {
  const spool = spoolFolder(dir, round, attempt);
  await mkdir(spool, { recursive: true });
  return spool;
}

/** The spool folders of `round`'s attempts that exist under `dir`, by attempt (none: no spool folder yet). */
export async function spoolAttemptsIn(dir: string, round: number): Promise<{ attempt: number; dir: string }[]> {
  const root = join(dir, 'spool');
  const prefix = `round-${round}.`;
  return (await readdir(root).catch(() => []))
    .filter((name) => name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)))
    .map((name) => ({ attempt: Number(name.slice(prefix.length)), dir: join(root, name) }));
}

export function checkpointPath(dir: string, sha256: string): string {
  if (!isSha256(sha256)) throw new CoordinatorError('BAD_REQUEST', `not a SHA-256: ${JSON.stringify(sha256)}`);
  return join(dir, 'models', `${sha256}.safetensors`);
}

/** Where optimizer state `slot` of checkpoint `modelSha256` lies under the state dir `dir`; `BAD_REQUEST` for a malformed name. */
export function optimizerStatePath(dir: string, modelSha256: string, slot: string): string {
  if (!isSha256(modelSha256) || !/^[a-z0-9]{1,32}$/.test(slot)) {
    throw new CoordinatorError('BAD_REQUEST', `not an optimizer state name (<sha256>.<slot>): ${JSON.stringify(`${modelSha256}.${slot}`)}`);
  }
  return join(dir, 'optimizer', `${modelSha256}.${slot}.safetensors`);
}

/**
 * The checkpoints under a state dir, read-only: what an aggregator shard reads of the coordinator's
 * checkpoint storage (issue 22). It never opens the journal or writes a file of the store.
 */
export class CheckpointDir {
  constructor(readonly dir: string) {}

  async openModel(sha256: string): Promise<FileSource> {
    const path = checkpointPath(this.dir, sha256);
    if (!(await pathExists(path))) throw new CoordinatorError('MODEL_NOT_FOUND', `no checkpoint ${sha256}`, { sha256 });
    return openFileSource(path);
  }

  hasOptimizerState(modelSha256: string, slot: string): Promise<boolean> {
    return pathExists(optimizerStatePath(this.dir, modelSha256, slot));
  }

  openOptimizerState(modelSha256: string, slot: string): Promise<FileSource> {
    return openFileSource(optimizerStatePath(this.dir, modelSha256, slot));
  }
}

/** The state store in a local directory (the default): its checkpoints read as a {@link CheckpointDir}'s. */
export class LocalStateStore extends CheckpointDir implements StateStore {
  private constructor(
    dir: string,
    private readonly journal: JournalPort,
  ) {
    super(dir);
  }

  /**
   * Opens or creates `dir`, verifying the journal (a torn last line is repaired). `journal`: one
   * opened elsewhere (a standby pair's replicated stream) instead of `dir/journal.jsonl`; the
   * checkpoints, optimizer state and spools stay in `dir`.
   */
  static async open(dir: string, now?: () => number, journal?: JournalPort): Promise<LocalStateStore> {
    for (const sub of ['models', 'optimizer', 'spool', 'tmp']) await mkdir(join(dir, sub), { recursive: true });
    // Leftover temp files are writes that never committed; they were never referenced.
    await rm(join(dir, 'tmp'), { recursive: true, force: true });
    await mkdir(join(dir, 'tmp'), { recursive: true });
    return new LocalStateStore(dir, journal ?? (await Journal.open(join(dir, 'journal.jsonl'), now)));
  }

  records(): readonly JournalRecord[] {
    return this.journal.records();
  }

  /** Bytes of a torn last journal line cut off at open (a crash mid-append); 0 when none. */
  get journalRepairedBytes(): number {
    return this.journal.repairedBytes ?? 0;
  }

  append<B extends { readonly type: string }>(body: B): Promise<JournalRecord<B & JournalBody>> {
    return this.journal.append(body);
  }

  modelPath(sha256: string): string {
    return checkpointPath(this.dir, sha256);
  }

  async hasModel(sha256: string): Promise<boolean> {
    return pathExists(this.modelPath(sha256));
  }

  async createModel(): Promise<PendingFile> {
    const file = await AtomicFile.create(join(this.dir, 'tmp'));
    return {
      write: (bytes) => file.write(bytes),
      get bytesWritten() {
        return file.bytesWritten;
      },
      commit: async () => ({ sha256: (await file.commit((sha) => this.modelPath(sha))).sha256 }),
      discard: () => file.discard(),
    };
  }

  private optimizerPath(name: string): string {
    const [sha, slot, ...rest] = name.split('.');
    if (rest.length > 0) throw new CoordinatorError('BAD_REQUEST', `not an optimizer state name (<sha256>.<slot>): ${JSON.stringify(name)}`);
    return optimizerStatePath(this.dir, sha ?? '', slot ?? '');
  }

  async createOptimizerState(): Promise<PendingNamedFile> {
    const file = await StagedFile.create(join(this.dir, 'tmp'));
    return {
      write: (bytes) => file.write(bytes),
      get bytesWritten() {
        return file.bytesWritten;
      },
      commit: (name) => file.publish(this.optimizerPath(name)),
      discard: () => file.discard(),
    };
  }

  get stagingDir(): string {
    return join(this.dir, 'tmp');
  }

  async publishStagedModel(path: string, signal?: AbortSignal): Promise<{ sha256: string }> {
    const sha256 = await sha256File(path, signal);
    const final = this.modelPath(sha256);
    await rename(path, final);
    await fsyncDir(dirname(final));
    return { sha256 };
  }

  async publishStagedOptimizerState(path: string, modelSha256: string, slot: string): Promise<void> {
    const final = this.optimizerPath(`${modelSha256}.${slot}`);
    await rename(path, final);
    await fsyncDir(dirname(final));
  }

  spoolDir(round: number, attempt: number): Promise<string> {
    return spoolDirIn(this.dir, round, attempt);
  }

  spoolAttempts(round: number): Promise<{ attempt: number; dir: string }[]> {
    return spoolAttemptsIn(this.dir, round);
  }

  async pruneSpools(keep?: { round: number; attempt?: number }): Promise<void> {
    const root = join(this.dir, 'spool');
    const kept = (name: string): boolean => keep !== undefined && (keep.attempt === undefined ? name.startsWith(`round-${keep.round}.`) : name === `round-${keep.round}.${keep.attempt}`);
    for (const name of await readdir(root)) {
      if (!kept(name)) await rm(join(root, name), { recursive: true, force: true });
    }
  }

  /**
   * Deletes checkpoint `sha256` and the optimizer state saved beside it (retention). The caller
   * decides that the journal no longer needs it.
   */
  async deleteCheckpoint(sha256: string): Promise<void> {
    await rm(this.modelPath(sha256), { force: true });
    for (const name of await readdir(join(this.dir, 'optimizer'))) {
      if (name.startsWith(`${sha256}.`)) await rm(join(this.dir, 'optimizer', name), { force: true });
    }
  }

  /** Bytes of every file under the state dir. */
  async sizeBytes(): Promise<number> {
    return dirBytes(this.dir);
  }

  close(): Promise<void> {
    return this.journal.close();
  }
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await dirBytes(path);
    else total += await stat(path).then((s) => s.size, () => 0);
  }
  return total;
}
