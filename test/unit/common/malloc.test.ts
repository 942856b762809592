import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NODE_HEAP_OPTIONS } from '../../../common/gc-tuning.js';
import { MALLOC_TUNING, withMallocTuning } from '../../../common/malloc.js';

const BIN = resolve('bin/fedhpc');

describe('glibc allocator settings', () => {
  it('adds the settings to an environment without overriding what the operator set', () => {
    const env = withMallocTuning({ PATH: '/bin', MALLOC_TRIM_THRESHOLD_: '1' });
    expect(env['MALLOC_TRIM_THRESHOLD_']).toBe('1');
    expect(env['MALLOC_MMAP_THRESHOLD_']).toBe(MALLOC_TUNING['MALLOC_MMAP_THRESHOLD_']);
    expect(env['PATH']).toBe('/bin');
  });

  // A stand-in `node` on PATH (it prints what it was started with) is the only way to see the
  // environment the wrapper hands over before it replaces itself.
  it('bin/fedhpc, run through an npm-style symlink, execs node with fedhpc\'s Node options on dist/cli/main.js with the settings (stand-in node)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fedhpc-bin-'));
    const fakeNode = join(dir, 'node');
    writeFileSync(fakeNode, '#!/bin/sh\necho "args=$*"\necho "mmap=$MALLOC_MMAP_THRESHOLD_"\necho "trim=$MALLOC_TRIM_THRESHOLD_"\n');
    chmodSync(fakeNode, 0o755);
    const link = join(dir, 'fedhpc');
    symlinkSync(BIN, link);
    const run = (env: Record<string, string>): string =>
      execFileSync(link, ['site', '--config', 'a b.json'], { env: { PATH: `${dir}:/usr/bin:/bin`, ...env } }).toString();
    const out = run({});
    expect(out).toContain(`args=${NODE_HEAP_OPTIONS.join(' ')} ${resolve('dist/cli/main.js')} site --config a b.json`);
    expect(out).toContain(`mmap=${MALLOC_TUNING['MALLOC_MMAP_THRESHOLD_']}`);
    expect(out).toContain(`trim=${MALLOC_TUNING['MALLOC_TRIM_THRESHOLD_']}`);
    expect(run({ MALLOC_TRIM_THRESHOLD_: '4096' })).toContain('trim=4096');
  });
});
