/**
 * The second implementation against the protocol's test vectors: test/interop/vectors_check.py
 * recomputes every file of proto/vectors/ with the Python code written from docs/protocol.md. A
 * difference is a disagreement between the TypeScript code, the page and the Python agent — the
 * rule of docs/protocol.md is that all three change together.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { skipUnless } from '../helpers/components.js';
import { INTEROP_DIR, PYTHON, ROOT, pythonInteropUnavailable } from './python.js';

const skip = skipUnless('python-interop', pythonInteropUnavailable());

describe.skipIf(skip)('the Python implementation against proto/vectors/', () => {
  it('derives every vector file exactly (x25519+HKDF, PRG, quantize-mask, masked sum, Shamir, sealed shares, signed payloads, graph, receipts, canonical JSON, journal, wire encodings, encoded fields, folded weights)', () => {
    const r = spawnSync(PYTHON, [join(INTEROP_DIR, 'vectors_check.py'), join(ROOT, 'proto', 'vectors')], { encoding: 'utf8', timeout: 120_000 });
    const lines = r.stdout.trim().split('\n');
    expect(r.stderr, 'vectors_check.py wrote to stderr').toBe('');
    expect(lines.filter((l) => !l.startsWith('ok ')), r.stdout).toEqual([]);
    const files = readdirSync(join(ROOT, 'proto', 'vectors')).filter((f) => f.endsWith('.json')).sort();
    expect(lines.map((l) => l.split(' ')[1]).sort()).toEqual(files);
    expect(r.status).toBe(0);
  });
});
