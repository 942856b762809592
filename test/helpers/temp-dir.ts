/** A scratch directory made before each test of the calling file and removed after it. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';

/**
 * Registers the hooks (call it at the top of a test file or describe block) and returns the
 * current test's directory, named `<prefix>…` under the system's temporary directory.
 */
export function tempDirEachTest(prefix: string): () => string {
  let dir: string | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
  });
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });
  return () => {
    if (dir === undefined) throw new Error('the scratch directory exists only while a test runs');
    return dir;
  };
}
