/**
 * The JSON Schemas of the NATS events (proto/events/) are what another language validates fedhpc's
 * events with: they must be exactly what the coordinator's zod schemas say, and say it usefully.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as events from '../../../coordinator/observe/events.js';
import { EVENT_SCHEMA_DIR, eventSchemaFiles } from '../../../scripts/gen-event-schemas.mjs';
import { PROTOCOL_VERSION } from '../../../proto/index.js';

const ROOT = resolve(fileURLToPath(new URL('../../../', import.meta.url)));

describe('event JSON Schemas', () => {
  const files = eventSchemaFiles(events);

  it('are checked in exactly as the zod schemas generate them (npm run gen:events)', () => {
    const dir = join(ROOT, EVENT_SCHEMA_DIR);
    expect(readdirSync(dir).sort()).toEqual([...files.keys()].sort());
    for (const [name, text] of files) expect(readFileSync(join(dir, name), 'utf8'), name).toBe(text);
  });

  it('cover every event kind and the gap notice, each tying kind, federation and a strict body', () => {
    expect(files.size).toBe(events.EVENT_KINDS.length + 2);
    const schema = JSON.parse(files.get('round.committed.schema.json') ?? '{}') as {
      properties: { kind: { const: string }; body: { required: string[]; additionalProperties: boolean } };
      required: string[];
    };
    expect(schema.properties.kind.const).toBe('round.committed');
    expect(schema.required).toEqual(['kind', 'ts', 'federation', 'body']);
    expect(schema.properties.body.additionalProperties).toBe(false);
    expect(schema.properties.body.required).toContain('modelSha256');
  });
});

describe('the .proto', () => {
  it('states the protocol version the code speaks', () => {
    const proto = readFileSync(join(ROOT, 'proto/fedhpc/v1/fedhpc.proto'), 'utf8');
    expect(proto.split('\n')[0]).toBe(`// fedhpc wire contract, protocol version ${PROTOCOL_VERSION} (PROTOCOL_VERSION in proto/index.ts).`);
  });
});
