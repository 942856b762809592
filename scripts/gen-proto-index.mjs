// Regenerates the type re-exports in proto/index.ts after `proto-loader-gen-types` ran: one
// `export type { … }` line per generated message/service file, between the marker comments.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';

const dir = 'proto/generated/fedhpc/v1';
const lines = readdirSync(dir)
  .filter((f) => f.endsWith('.ts'))
  .sort()
  .map((f) => {
    const name = f.slice(0, -3);
    const names = [...readFileSync(`${dir}/${f}`, 'utf8').matchAll(/export (?:interface|type) (\w+)/g)].map((m) => m[1]);
    return `export type { ${names.join(', ')} } from './generated/fedhpc/v1/${name}.js';`;
  });
const file = 'proto/index.ts';
const text = readFileSync(file, 'utf8');
const begin = '// <generated-exports>';
const end = '// </generated-exports>';
const start = text.indexOf(begin);
const stop = text.indexOf(end);
if (start < 0 || stop < 0) throw new Error(`${file} lacks the ${begin} … ${end} markers`);
writeFileSync(file, `${text.slice(0, start + begin.length)}\n${lines.join('\n')}\n${text.slice(stop)}`);
