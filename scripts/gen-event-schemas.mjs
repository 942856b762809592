// Writes the JSON Schema of every NATS event message (proto/events/<kind>.schema.json) from the
// coordinator's zod schemas, so consumers in other languages validate what fedhpc publishes.
// `npm run gen:events` (after a build); test/unit/coordinator/event-schemas.test.ts fails when the
// checked-in files drift from the schemas.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { zodToJsonSchema } from 'zod-to-json-schema';

/** Where the schemas are checked in. */
export const EVENT_SCHEMA_DIR = 'proto/events';

/**
 * The checked-in files, by name: one schema per event kind and the gap notice, and `subjects.json`
 * mapping each kind to its subject.
 * @param {{ EVENT_KINDS: readonly string[], NATS_GAP_KIND: string, natsEventSchema: (kind: never) => import('zod').ZodTypeAny, natsGapEventSchema: import('zod').ZodTypeAny }} c
 * @returns {Map<string, string>}
 */
export function eventSchemaFiles(c) {
  const files = new Map();
  /** @type {Record<string, string>} */
  const subjects = {};
  const add = (/** @type {string} */ kind, /** @type {import('zod').ZodTypeAny} */ schema) => {
    const json = zodToJsonSchema(schema, { target: 'jsonSchema7', $refStrategy: 'none' });
    const doc = { $id: `https://fedhpc.eu/schemas/events/${kind}.schema.json`, title: `fedhpc event ${kind}`, description: `The JSON message published on <prefix>.events.${kind} (prefix: fedhpc.<federation> unless nats.subjectPrefix is set).`, ...json };
    files.set(`${kind}.schema.json`, `${JSON.stringify(doc, null, 2)}\n`);
    subjects[kind] = `<prefix>.events.${kind}`;
  };
  for (const kind of c.EVENT_KINDS) add(kind, c.natsEventSchema(/** @type {never} */ (kind)));
  add(c.NATS_GAP_KIND, c.natsGapEventSchema);
  files.set('subjects.json', `${JSON.stringify(subjects, null, 2)}\n`);
  return files;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const coordinator = await import(pathToFileURL(join(process.cwd(), 'dist/coordinator/index.js')).href);
  mkdirSync(EVENT_SCHEMA_DIR, { recursive: true });
  for (const [name, text] of eventSchemaFiles(coordinator)) writeFileSync(join(EVENT_SCHEMA_DIR, name), text);
  process.stdout.write(`wrote ${EVENT_SCHEMA_DIR}/\n`);
}
