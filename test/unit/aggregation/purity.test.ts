import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// DESIGN.md, Layout: aggregation/ is pure — it imports itself and four node modules, nothing else.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../aggregation');
const ALLOWED = new Set(['node:crypto', 'node:buffer', 'node:stream', 'node:worker_threads']);

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Module specifiers of static imports, re-exports, side-effect imports, dynamic imports and require. */
function specifiers(source: string): string[] {
  const patterns = [/\b(?:import|export)\s[^'"]*?\sfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*['"]([^'"]+)['"]/g, /\b(?:import|require)\s*\(\s*['"`]([^'"`]+)['"`]/g];
  return patterns.flatMap((p) => [...source.matchAll(p)].map((m) => m[1]!));
}

describe('aggregation purity', () => {
  it('imports nothing outside aggregation/ but the four allowed node modules', () => {
    const files = tsFiles(ROOT);
    expect(files.length).toBeGreaterThan(5);
    const offences: string[] = [];
    for (const file of files) {
      const source = readFileSync(file, 'utf8');
      if (/\b(?:import|require)\s*\(\s*[^'"`\s]/.test(source)) offences.push(`${relative(ROOT, file)}: non-literal dynamic import`);
      for (const spec of specifiers(source)) {
        if (ALLOWED.has(spec)) continue;
        const target = spec.startsWith('.') ? resolve(dirname(file), spec) : undefined;
        if (target !== undefined && (target === ROOT || target.startsWith(ROOT + sep))) continue;
        offences.push(`${relative(ROOT, file)}: ${spec}`);
      }
    }
    expect(offences).toEqual([]);
  });

  it('recognises the import forms it polices', () => {
    const found = specifiers(`import { a } from 'zod';\nimport type { B } from "../x.js";\nexport * from './y.js';\nimport 'node:fs';\nconst m = await import('node:net');\nexport { c } from './z.js';`);
    expect(found.sort()).toEqual(['../x.js', './y.js', './z.js', 'node:fs', 'node:net', 'zod'].sort());
  });
});

// DESIGN.md, Layout (and docs/decisions.md): cli → simulate → coordinator | site-agent →
// aggregation, common. The coordinator and the site agent never import each other, and common/
// imports neither: a site ships without the coordinator's code, and the reverse.
describe('layering', () => {
  const repo = resolve(ROOT, '..');
  const forbidden: Record<string, readonly string[]> = {
    'site-agent': ['coordinator', 'simulate', 'cli', 'bench'],
    coordinator: ['site-agent', 'simulate', 'cli', 'bench'],
    common: ['coordinator', 'site-agent', 'aggregation', 'simulate', 'cli', 'bench'],
  };
  for (const [part, banned] of Object.entries(forbidden)) {
    it(`${part}/ imports none of ${banned.join(', ')}`, () => {
      const offences: string[] = [];
      for (const file of tsFiles(join(repo, part))) {
        for (const spec of specifiers(readFileSync(file, 'utf8'))) {
          if (!spec.startsWith('.')) continue;
          const top = relative(repo, resolve(dirname(file), spec)).split(sep)[0]!;
          if (banned.includes(top)) offences.push(`${relative(repo, file)}: ${spec}`);
        }
      }
      expect(offences).toEqual([]);
    });
  }
});
