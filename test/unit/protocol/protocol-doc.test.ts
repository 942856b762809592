/**
 * docs/protocol.md is what another implementation is written from. It must name the protocol version
 * the code speaks, every error code with the status and retry verdict the wire carries, every
 * domain-separation label, and each vector file with the section that specifies it; and every path
 * it names must exist.
 */
import * as grpc from '@grpc/grpc-js';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as secagg from '../../../aggregation/secagg/index.js';
import { COORDINATOR_ERRORS } from '../../../coordinator/core/errors.js';
import { PROTOCOL_VERSION } from '../../../proto/index.js';
import { VECTORS } from '../../../scripts/gen-vectors.mjs';

const ROOT = resolve(fileURLToPath(new URL('../../../', import.meta.url)));
const DOC = readFileSync(join(ROOT, 'docs/protocol.md'), 'utf8');

/** The rows of the first table after `heading`, as cells. */
function tableAfter(heading: string): string[][] {
  const at = DOC.indexOf(heading);
  expect(at, heading).toBeGreaterThanOrEqual(0);
  const lines = DOC.slice(at).split('\n');
  const first = lines.findIndex((l) => l.startsWith('|'));
  const rows: string[][] = [];
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split('|').slice(1, -1).map((c) => c.trim()));
  }
  return rows;
}

describe('docs/protocol.md', () => {
  it('names the protocol version the code speaks', () => {
    expect(DOC).toContain(`Protocol version **${PROTOCOL_VERSION}**`);
  });

  it("lists every coordinator error code with its gRPC status and retry verdict, as toServiceError sends them", () => {
    const rows = tableAfter('## Errors on the wire');
    const documented = Object.fromEntries(rows.map(([code = '', status = '', retryable = '']) => [code.replace(/`/g, ''), `${status} ${retryable}`]));
    const actual = Object.fromEntries(Object.entries(COORDINATOR_ERRORS).map(([code, e]) => [code, `${grpc.status[e.status]} ${e.retryable}`]));
    expect(documented).toEqual(actual);
  });

  it('names every domain-separation label of secure aggregation', () => {
    const labels = [secagg.ADVERTISEMENT_LABEL, secagg.PAIRWISE_MASK_SEED_LABEL, secagg.SHARE_ENCRYPTION_LABEL, secagg.SHARE_AAD_LABEL, secagg.NEIGHBOUR_GRAPH_LABEL];
    const survivors = JSON.parse(Buffer.from(secagg.survivorListBytes('r/attempt-0', 1, ['a'], [])).toString('utf8')) as unknown[];
    labels.push(String(survivors[0]));
    const documented = tableAfter('Labels (constants in').map(([label = '']) => label.replace(/`/g, ''));
    expect(documented.sort()).toEqual(labels.sort());
  });

  it("lists each vector file, and the section its `spec` points at names it", () => {
    const listed = tableAfter('### Test vectors').map(([file = '']) => file.replace(/`/g, ''));
    expect(listed.sort()).toEqual(Object.keys(VECTORS).map((f) => `proto/vectors/${f}`).sort());
    // Sections by GitHub's anchor of their heading: lower case, punctuation dropped, spaces to hyphens.
    const headings = [...DOC.matchAll(/^(#+) (.+)$/gm)].map((m) => ({ at: m.index, level: m[1]!.length, anchor: m[2]!.toLowerCase().replace(/[^\p{L}\p{N}\- ]/gu, '').replace(/ /g, '-') }));
    for (const [name, v] of Object.entries(VECTORS)) {
      const i = headings.findIndex((h) => h.anchor === v.spec);
      expect(i, `${name}: a heading for #${v.spec}`).toBeGreaterThanOrEqual(0);
      const end = headings.slice(i + 1).find((h) => h.level <= headings[i]!.level)?.at ?? DOC.length;
      expect(DOC.slice(headings[i]!.at, end), `section #${v.spec}`).toContain(`proto/vectors/${name}`);
    }
  });

  it('names only paths that exist', () => {
    const named = [...DOC.matchAll(/`([^`\s]+)`/g)].map((m) => m[1]!).filter((p) => /^(?:aggregation|common|proto|coordinator|site-agent|scripts|docs|test)\/[\w./-]+$/.test(p));
    expect(named.length).toBeGreaterThan(20);
    const missing = [...new Set(named)].filter((p) => !existsSync(join(ROOT, p)));
    expect(missing).toEqual([]);
  });
});
