/**
 * docs/architecture.md is the map a newcomer follows; a map that names a file or a function that is
 * no longer there misleads. Every path it names must exist (the old-path column of the move table
 * excepted), and every function of the delta's path must be found in the files its row names.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(fileURLToPath(new URL('../../../', import.meta.url)));
const DOC = readFileSync(join(ROOT, 'docs/architecture.md'), 'utf8');
const PATH = /^(?:aggregation|common|proto|coordinator|site-agent|simulate|cli|bench|deploy|docs|test|scripts)\/[\w./-]*$/;

/** Backticked spans of `text` that look like repository paths. */
function pathsIn(text: string): string[] {
  return [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]!.trim()).filter((p) => PATH.test(p));
}

function section(title: string): string {
  const start = DOC.indexOf(`## ${title}`);
  expect(start, `section "${title}"`).toBeGreaterThanOrEqual(0);
  const next = DOC.indexOf('\n## ', start + 3);
  return DOC.slice(start, next < 0 ? undefined : next);
}

function tableRows(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('|') && !/^\|\s*-/.test(l))
    .slice(1)
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
}

describe('docs/architecture.md', () => {
  it('names only paths that exist (new paths of the move table included)', () => {
    const moves = section('Old path → new path');
    const rest = DOC.replace(moves, '');
    const named = [...pathsIn(rest), ...tableRows(moves).flatMap((row) => pathsIn(row[1] ?? ''))];
    expect(named.length).toBeGreaterThan(30);
    const missing = [...new Set(named)].filter((p) => !existsSync(join(ROOT, p)));
    expect(missing).toEqual([]);
  });

  it("finds every file the coordinator's folder table names in its folder", () => {
    const missing: string[] = [];
    let files = 0;
    for (const [folders, what] of tableRows(section('Inside the coordinator'))) {
      const dirs = pathsIn(folders ?? '').filter((d) => d.endsWith('/'));
      if (dirs.length !== 1) continue;
      for (const m of (what ?? '').matchAll(/`([\w.-]+\.(?:ts|mjs))`/g)) {
        files += 1;
        if (!existsSync(join(ROOT, dirs[0]!, m[1]!))) missing.push(`${dirs[0]}${m[1]}`);
      }
    }
    expect(files).toBeGreaterThan(40);
    expect(missing).toEqual([]);
  });

  it('lists old paths that are gone, each with a new one', () => {
    const rows = tableRows(section('Old path → new path'));
    expect(rows.length).toBeGreaterThan(30);
    for (const [old] of rows) for (const p of pathsIn(old ?? '')) expect(existsSync(join(ROOT, p)), `${p} was moved`).toBe(false);
  });

  it("finds each function of the delta's path in the files its row names", () => {
    const rows = tableRows(section('One delta'));
    expect(rows.length).toBeGreaterThanOrEqual(12);
    const absent: string[] = [];
    for (const [step, , files, functions] of rows) {
      const source = pathsIn(files ?? '').map((p) => readFileSync(join(ROOT, p), 'utf8')).join('\n');
      const names = [...(functions ?? '').matchAll(/`([^`]+)`/g)].flatMap((m) => m[1]!.split('.'));
      for (const name of names) if (!new RegExp(`\\b${name}\\b`).test(source)) absent.push(`step ${step}: ${name}`);
    }
    expect(absent).toEqual([]);
  });
});
