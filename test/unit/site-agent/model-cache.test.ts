/** The site's model cache (site-agent/transfer.ts `pruneModelCache`): each round adds a global model; only the ones still read stay. */
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cachedModelPath, pruneModelCache } from '../../../site-agent/download.js';
import { tempDirEachTest } from '../../helpers/temp-dir.js';

const sha = (c: string): string => c.repeat(64);
const dir = tempDirEachTest('fedhpc-cache-');

describe('pruneModelCache', () => {
  it('removes the models not kept, and leaves partial downloads and other files', async () => {
    for (const c of ['a', 'b', 'c', 'd']) await writeFile(cachedModelPath(dir(), sha(c)), c);
    await writeFile(`${cachedModelPath(dir(), sha('e'))}.partial`, 'e');
    await writeFile(join(dir(), 'notes.txt'), 'x');
    const removed = await pruneModelCache(dir(), new Set([sha('b'), sha('d')]));
    expect(removed.sort()).toEqual([sha('a'), sha('c')]);
    expect((await readdir(dir())).sort()).toEqual([`${sha('b')}.safetensors`, `${sha('d')}.safetensors`, `${sha('e')}.safetensors.partial`, 'notes.txt']);
  });

  it('does nothing to a cache that does not exist yet', async () => {
    expect(await pruneModelCache(join(dir(), 'absent'), new Set())).toEqual([]);
  });
});
