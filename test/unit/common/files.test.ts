import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backoffDelay } from '../../../common/backoff.js';
import { AtomicFile, isSha256, openFileSource, sha256File } from '../../../common/files.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-files-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** mulberry32: a seeded random source in [0, 1). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('AtomicFile', () => {
  it('publishes the written bytes under the final name and returns their SHA-256', async () => {
    const f = await AtomicFile.create(dir);
    expect(f.tempPath.startsWith(join(dir, '.tmp-'))).toBe(true);
    await f.write(Buffer.from('hello '));
    await f.write(Buffer.from('world'));
    expect(f.bytesWritten).toBe(11);
    const final = join(dir, 'out.bin');
    const { path, sha256: sha } = await f.commit(final);
    expect(path).toBe(final);
    expect(await readFile(final, 'utf8')).toBe('hello world');
    expect(sha).toBe(sha256(Buffer.from('hello world')));
    expect(await sha256File(final)).toBe(sha);
    expect((await stat(final)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['out.bin']);
  });

  it('names the file from its hash when given a function', async () => {
    const f = await AtomicFile.create(dir);
    await f.write(Uint8Array.of(1, 2, 3));
    const { path, sha256: sha } = await f.commit((s) => join(dir, `${s}.bin`));
    expect(sha).toBe(sha256(Uint8Array.of(1, 2, 3)));
    expect(path).toBe(join(dir, `${sha}.bin`));
    expect(isSha256(sha)).toBe(true);
  });

  it('hashes an empty file', async () => {
    const f = await AtomicFile.create(dir);
    const { sha256: sha } = await f.commit(join(dir, 'empty'));
    expect(sha).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect((await stat(join(dir, 'empty'))).size).toBe(0);
  });

  it('leaves nothing behind when discarded, even twice', async () => {
    const f = await AtomicFile.create(dir);
    await f.write(Uint8Array.of(1, 2, 3));
    await f.discard();
    await f.discard();
    expect(await readdir(dir)).toEqual([]);
  });

  it('replaces an existing file atomically', async () => {
    const final = join(dir, 'x');
    await writeFile(final, 'old');
    const f = await AtomicFile.create(dir);
    await f.write(Buffer.from('new'));
    await f.commit(final);
    expect(await readFile(final, 'utf8')).toBe('new');
  });
});

describe('openFileSource', () => {
  it('reads any range inside the file', async () => {
    const bytes = Uint8Array.from({ length: 100 }, (_, i) => i);
    const path = join(dir, 'f');
    await writeFile(path, bytes);
    const src = await openFileSource(path);
    try {
      expect(src.size).toBe(100);
      expect(Array.from(await src.read(0, 3))).toEqual([0, 1, 2]);
      expect(Array.from(await src.read(97, 3))).toEqual([97, 98, 99]);
      expect(Array.from(await src.read(0, 100))).toEqual(Array.from(bytes));
      expect((await src.read(100, 0)).length).toBe(0);
    } finally {
      await src.close();
    }
  });

  it('refuses reads outside the file instead of returning short data', async () => {
    const path = join(dir, 'f');
    await writeFile(path, Uint8Array.of(1, 2, 3, 4));
    const src = await openFileSource(path);
    try {
      await expect(src.read(2, 3)).rejects.toThrow(RangeError);
      await expect(src.read(4, 1)).rejects.toThrow(RangeError);
      await expect(src.read(-1, 2)).rejects.toThrow(RangeError);
      await expect(src.read(0, -1)).rejects.toThrow(RangeError);
      await expect(src.read(2, 3)).rejects.toThrow(/read \[2, 5\) outside file of 4 bytes/);
      // readInto fills the caller's buffer, all of it, and refuses the same ranges.
      const target = Buffer.alloc(2);
      expect(await src.readInto(1, target)).toBe(target);
      expect([...target]).toEqual([2, 3]);
      await expect(src.readInto(3, Buffer.alloc(2))).rejects.toThrow(/read \[3, 5\) outside file of 4 bytes/);
    } finally {
      await src.close();
    }
  });

  it('fails for a missing file', async () => {
    await expect(openFileSource(join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('isSha256', () => {
  it('accepts 64 lowercase hex digits only', () => {
    expect(isSha256('0123456789abcdef'.repeat(4))).toBe(true);
    expect(isSha256('0123456789ABCDEF'.repeat(4))).toBe(false);
    expect(isSha256('a'.repeat(63))).toBe(false);
    expect(isSha256(`${'a'.repeat(64)}\n`)).toBe(false);
    expect(isSha256('../x')).toBe(false);
  });
});

describe('backoffDelay', () => {
  const options = { initialMs: 250, maxMs: 15_000 };

  it('stays within [0, min(maxMs, initialMs·2^attempt)] and is an integer', () => {
    const random = seeded(42);
    for (let attempt = 0; attempt < 30; attempt++) {
      const cap = Math.min(options.maxMs, options.initialMs * 2 ** attempt);
      for (let k = 0; k < 50; k++) {
        const d = backoffDelay(options, attempt, random);
        expect(Number.isInteger(d)).toBe(true);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(cap);
      }
    }
  });

  it('spreads delays across the range (jitter) and reaches near the cap', () => {
    const random = seeded(7);
    const delays = Array.from({ length: 200 }, () => backoffDelay(options, 10, random));
    expect(Math.max(...delays)).toBeGreaterThan(options.maxMs * 0.9);
    expect(new Set(delays).size).toBeGreaterThan(150);
  });

  it('is deterministic for a given random source', () => {
    const a = seeded(3);
    const b = seeded(3);
    for (let attempt = 0; attempt < 10; attempt++) expect(backoffDelay(options, attempt, a)).toBe(backoffDelay(options, attempt, b));
  });

  it('uses the factor and the extremes of the random source', () => {
    expect(backoffDelay({ initialMs: 100, maxMs: 10_000, factor: 3 }, 2, () => 0.999999)).toBe(899); // cap 900
    expect(backoffDelay({ initialMs: 100, maxMs: 10_000 }, 20, () => 0.5)).toBe(5000); // capped at maxMs
    expect(backoffDelay(options, 0, () => 0)).toBeLessThanOrEqual(options.initialMs);
  });

  it('never exceeds maxMs, even when maxMs is below initialMs', () => {
    // The site agent's config allows initialMs 1000 with maxMs 100.
    const random = seeded(1);
    for (let attempt = 0; attempt < 5; attempt++) expect(backoffDelay({ initialMs: 1000, maxMs: 100 }, attempt, random)).toBeLessThanOrEqual(100);
  });
});
