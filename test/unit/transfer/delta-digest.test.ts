import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeltaDigest } from '../../../coordinator/upload/session.js';

/**
 * The coordinator's whole-delta SHA-256 is streamed as chunks are written: whatever order and
 * rewinds the stripes go through, it must equal the hash of the spool's final bytes.
 */
describe('DeltaDigest', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-digest-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Writes `writes` (offset, bytes) to a spool, telling the digest; returns (streamed, true) digests. */
  async function run(total: number, steps: ({ write: [number, Buffer] } | { rewind: number })[]): Promise<{ streamed: string; actual: string; skipped: number }> {
    const path = join(dir, 'spool');
    const file = await open(path, 'w+');
    try {
      const digest = new DeltaDigest();
      for (const step of steps) {
        if ('rewind' in step) digest.rewound(step.rewind);
        else {
          await file.write(step.write[1], 0, step.write[1].length, step.write[0]);
          digest.written(step.write[0], step.write[1]);
        }
      }
      const skipped = digest.hashedTo;
      const streamed = await digest.finish(file, total);
      const bytes = Buffer.alloc(total);
      await file.read(bytes, 0, total, 0);
      return { streamed, actual: createHash('sha256').update(bytes).digest('hex'), skipped };
    } finally {
      await file.close();
    }
  }

  const data = randomBytes(10_000);
  const chunk = (from: number, to: number): { write: [number, Buffer] } => ({ write: [from, data.subarray(from, to)] });

  it('hashes a one-stripe upload as it arrives: nothing is read back', async () => {
    const r = await run(10_000, [chunk(0, 4096), chunk(4096, 8192), chunk(8192, 10_000)]);
    expect(r.streamed).toBe(r.actual);
    expect(r.skipped).toBe(10_000);
  });

  it('streams the first stripe and reads the later ones back, whatever order they arrive in', async () => {
    const r = await run(10_000, [chunk(5000, 7500), chunk(0, 2500), chunk(7500, 10_000), chunk(2500, 5000)]);
    expect(r.streamed).toBe(r.actual);
    expect(r.skipped).toBe(5000);
  });

  it('gives the stream up on a rewind behind what it hashed, and still gets the final bytes right', async () => {
    const wrong = Buffer.from(data.subarray(4096, 8192));
    wrong.writeUInt8(wrong.readUInt8(17) ^ 0xff, 17); // a tensor whose digest failed: discarded, rewound, written again
    const r = await run(10_000, [chunk(0, 4096), { write: [4096, wrong] }, { rewind: 4096 }, chunk(4096, 8192), chunk(8192, 10_000)]);
    expect(r.streamed).toBe(r.actual);
    expect(r.skipped).toBe(0);
  });

  it('begins afresh on a rewind to the very start (a stripe proved whole sent again): nothing is read back', async () => {
    const wrong = Buffer.from(data.subarray(0, 8192));
    wrong.writeUInt8(wrong.readUInt8(5000) ^ 0xff, 5000);
    const r = await run(10_000, [{ write: [0, wrong] }, chunk(8192, 10_000), { rewind: 0 }, chunk(0, 4096), chunk(4096, 10_000)]);
    expect(r.streamed).toBe(r.actual);
    expect(r.skipped).toBe(10_000);
  });

  it('keeps streaming across a rewind to exactly where it stands (a chunk refused for its CRC)', async () => {
    const r = await run(10_000, [chunk(0, 4096), { rewind: 4096 }, chunk(4096, 10_000)]);
    expect(r.streamed).toBe(r.actual);
    expect(r.skipped).toBe(10_000);
  });
});
