/**
 * File plumbing shared by coordinator and site agent: random-access byte sources over files,
 * atomic writes (temp file, fsync, rename, fsync of the directory) and streaming SHA-256.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** A file opened for random-access reads (the shape `aggregation` expects of a byte source). */
export interface FileSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Fills all of `target` from `offset`: a caller that reads chunk after chunk reuses one buffer. */
  readInto(offset: number, target: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** Opens `path` for random-access reads. Reads past the end are an error, never short. */
export async function openFileSource(path: string): Promise<FileSource> {
  const handle = await open(path, 'r');
  const { size } = await handle.stat();
  const readInto = async (offset: number, target: Uint8Array): Promise<Uint8Array> => {
    const length = target.length;
    if (offset < 0 || offset + length > size) {
      throw new RangeError(`${path}: read [${offset}, ${offset + length}) outside file of ${size} bytes`);
    }
    let done = 0;
    while (done < length) {
      const { bytesRead } = await handle.read(target, done, length - done, offset + done);
      if (bytesRead === 0) throw new RangeError(`${path}: unexpected end of file at ${offset + done}`);
      done += bytesRead;
    }
    return target;
  };
  return {
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (length < 0) throw new RangeError(`${path}: read [${offset}, ${offset + length}) outside file of ${size} bytes`);
      return readInto(offset, Buffer.allocUnsafe(length));
    },
    readInto,
    close: () => handle.close(),
  };
}

/** Fsyncs a directory so a rename inside it survives a power cut. */
export async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * A file written under a temporary name and published atomically under a name given at the end
 * (fsync, rename, fsync of the folder). Its bytes are not hashed: for files named otherwise than by
 * their content, such as a checkpoint's optimizer state beside it.
 */
export class StagedFile {
  private written = 0;
  protected constructor(
    readonly tempPath: string,
    private readonly handle: FileHandle,
  ) {}

  /** Creates a temp file in `dir` (the final path's folder, or one on its filesystem). */
  static async create(dir: string): Promise<StagedFile> {
    const tempPath = tempPathIn(dir);
    return new StagedFile(tempPath, await open(tempPath, 'wx', 0o600));
  }

  get bytesWritten(): number {
    return this.written;
  }

  async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.handle.write(bytes, done, bytes.length - done);
      done += bytesWritten;
    }
    this.written += bytes.length;
  }

  /** Fsyncs, renames to `finalPath` and fsyncs its folder. */
  async publish(finalPath: string): Promise<void> {
    await this.handle.sync();
    await this.handle.close();
    await rename(this.tempPath, finalPath);
    await fsyncDir(dirname(finalPath));
  }

  /** Deletes the temp file (after an error). */
  async discard(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await rm(this.tempPath, { force: true });
  }
}

/**
 * A {@link StagedFile} whose bytes are hashed as written, so the SHA-256 of a content-addressed
 * file costs no second read.
 */
export class AtomicFile extends StagedFile {
  private readonly hash: Hash = createHash('sha256');

  /** Creates a temp file beside `dirOrFinal` (a folder, or the final path's folder). */
  static override async create(dir: string): Promise<AtomicFile> {
    const tempPath = tempPathIn(dir);
    return new AtomicFile(tempPath, await open(tempPath, 'wx', 0o600));
  }

  override async write(bytes: Uint8Array): Promise<void> {
    this.hash.update(bytes);
    await super.write(bytes);
  }

  /** Fsyncs, renames to `finalPath` (or the path named by the content's hash) and fsyncs its folder. Returns the SHA-256 of the content. */
  async commit(finalPath: string | ((sha256: string) => string)): Promise<{ path: string; sha256: string }> {
    const sha256 = this.hash.digest('hex');
    const path = typeof finalPath === 'string' ? finalPath : finalPath(sha256);
    await this.publish(path);
    return { path, sha256 };
  }
}

/** A fresh temp file name in `dir`. */
function tempPathIn(dir: string): string {
  return join(dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/** SHA-256 of a file, streamed. */
export async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  return (await hashFilePrefix(path, Infinity, signal)).digest('hex');
}

/** A SHA-256 state fed with the first `bytes` bytes of `path` (all of it for Infinity), to continue. */
export async function hashFilePrefix(path: string, bytes: number, signal?: AbortSignal): Promise<Hash> {
  return feedHashFromFile(createHash('sha256'), path, 0, bytes, signal);
}

/** Feeds `hash` bytes [start, end) of `path` (to its end for Infinity) and returns it. */
export async function feedHashFromFile(hash: Hash, path: string, start: number, end: number, signal?: AbortSignal): Promise<Hash> {
  if (end <= start) return hash;
  const stream = createReadStream(path, { highWaterMark: 1 << 20, signal, start, ...(Number.isFinite(end) ? { end: end - 1 } : {}) });
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash;
}

/** Whether something exists at `path` (a file, a folder: whatever `stat` finds). */
export async function pathExists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Whether `name` is a lowercase hex SHA-256. */
export function isSha256(name: string): boolean {
  return /^[0-9a-f]{64}$/.test(name);
}

