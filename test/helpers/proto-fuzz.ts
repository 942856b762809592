/**
 * Structure-aware fuzz input for the fedhpc proto: messages built from the loaded descriptors and
 * encoded by a small protobuf wire writer of our own, so a field can carry what protobufjs would
 * never encode (the wrong wire type, a 10-byte varint, a truncated length). fast-check draws the
 * mutations, seeded, so a failing case can be replayed.
 */
import fc from 'fast-check';
import type * as protoLoader from '@grpc/proto-loader';
import { loadPackageDefinition } from '../../proto/index.js';

interface FieldDescriptor {
  readonly name: string;
  readonly number: number;
  readonly label: string;
  readonly type: string;
  readonly typeName: string;
}

/** A field value on the wire: the wire type and its payload. */
type WireValue =
  | { readonly wire: 0; readonly varint: bigint }
  | { readonly wire: 1; readonly fixed64: Buffer }
  | { readonly wire: 2; readonly bytes: Buffer }
  | { readonly wire: 5; readonly fixed32: Buffer };

/** One encoded field occurrence; a message is a list of them (repeated fields occur many times). */
interface WireField {
  readonly number: number;
  readonly value: WireValue;
}

function varint(v: bigint): Buffer {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x !== 0n) b |= 0x80;
    out.push(b);
  } while (x !== 0n);
  return Buffer.from(out);
}

/** Encodes wire fields in order (the writer never reorders or merges, unlike protobufjs). */
export function encodeWire(fields: readonly WireField[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    parts.push(varint(BigInt((f.number << 3) | f.value.wire)));
    const v = f.value;
    if (v.wire === 0) parts.push(varint(v.varint));
    else if (v.wire === 1) parts.push(v.fixed64);
    else if (v.wire === 5) parts.push(v.fixed32);
    else parts.push(varint(BigInt(v.bytes.length)), v.bytes);
  }
  return Buffer.concat(parts);
}

function descriptor(typeName: string): { fields: FieldDescriptor[] } {
  const entry = loadPackageDefinition()[typeName] as protoLoader.MessageTypeDefinition<unknown, unknown> | undefined;
  if (!entry) throw new Error(`no message ${typeName} in the proto`);
  return { fields: (entry.type as { field: FieldDescriptor[] }).field };
}

const qualified = (typeName: string): string => (typeName.startsWith('.') ? typeName.slice(1) : `fedhpc.v1.${typeName}`);

/** A plausible value for one scalar field: what a well-behaved peer would send. */
function plainScalar(f: FieldDescriptor, depth: number, hint: FieldHints): WireValue {
  const named = hint[f.name];
  switch (f.type) {
    case 'TYPE_STRING':
      return { wire: 2, bytes: Buffer.from(typeof named === 'string' ? named : `${f.name}-1`) };
    case 'TYPE_BYTES':
      return { wire: 2, bytes: Buffer.alloc(32, 7) };
    case 'TYPE_BOOL':
      return { wire: 0, varint: 1n };
    case 'TYPE_DOUBLE': {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(typeof named === 'number' ? named : 0.5);
      return { wire: 1, fixed64: b };
    }
    case 'TYPE_MESSAGE':
      return { wire: 2, bytes: depth > 3 ? Buffer.alloc(0) : encodeWire(plainMessage(qualified(f.typeName), depth + 1, hint)) };
    default:
      return { wire: 0, varint: BigInt(typeof named === 'number' ? named : 1) };
  }
}

/** Field values by name that make a generated message valid for the run under test (run id, round…). */
export type FieldHints = Readonly<Record<string, string | number>>;

/** A plausible message of `typeName`: every field set once (repeated fields twice). */
export function plainMessage(typeName: string, depth = 0, hint: FieldHints = {}): WireField[] {
  const out: WireField[] = [];
  for (const f of descriptor(typeName).fields) {
    const times = f.label === 'LABEL_REPEATED' ? 2 : 1;
    for (let i = 0; i < times; i++) out.push({ number: f.number, value: plainScalar(f, depth, hint) });
  }
  return out;
}

const hugeVarints = [2n ** 64n - 1n, 2n ** 63n, 2n ** 32n, 2n ** 53n + 1n, -1n, -(2n ** 31n), 0n];

/** A hostile value for field `f`: the wrong wire type, huge or negative numbers, long or odd bytes. */
function hostileValue(f: FieldDescriptor): fc.Arbitrary<WireValue[]> {
  const one = (a: fc.Arbitrary<WireValue>): fc.Arbitrary<WireValue[]> => a.map((v) => [v]);
  return fc.oneof(
    one(fc.constantFrom(...hugeVarints).map((v) => ({ wire: 0 as const, varint: v }))),
    one(fc.uint8Array({ minLength: 8, maxLength: 8 }).map((b) => ({ wire: 1 as const, fixed64: Buffer.from(b) }))),
    one(fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => ({ wire: 5 as const, fixed32: Buffer.from(b) }))),
    one(fc.constantFrom(0, 1, 1000, 70_000, 300_000).map((n) => ({ wire: 2 as const, bytes: Buffer.alloc(n, 0x41) }))),
    one(fc.uint8Array({ maxLength: 64 }).map((b) => ({ wire: 2 as const, bytes: Buffer.from(b) }))),
    one(fc.string({ unit: 'binary', maxLength: 40 }).map((s) => ({ wire: 2 as const, bytes: Buffer.from(s) }))),
    // A nested message of the wrong shape, or a field repeated far beyond what the schema expects.
    one(fc.constant({ wire: 2 as const, bytes: encodeWire([{ number: 1, value: { wire: 0, varint: 2n ** 64n - 1n } }]) })),
    fc.constantFrom(0, 3, 1000).map((n) => Array.from({ length: n }, () => plainScalar(f, 4, {}))),
  );
}

const mutatedCache = new Map<string, fc.Arbitrary<Buffer>>();
const nestedCache = new Map<string, Buffer[]>();

/** A few mutated encodings of a nested message type, drawn once (drawing per case is slow). */
function nestedVariants(typeName: string): Buffer[] {
  let v = nestedCache.get(typeName);
  if (!v) {
    v = fc.sample(mutatedMessage(typeName), { numRuns: 16, seed: typeName.length });
    nestedCache.set(typeName, v);
  }
  return v;
}

/** A structurally mutated message of `typeName`: one to three fields replaced, dropped or duplicated. */
export function mutatedMessage(typeName: string, hint: FieldHints = {}): fc.Arbitrary<Buffer> {
  const cacheKey = `${typeName} ${JSON.stringify(hint)}`;
  const cached = mutatedCache.get(cacheKey);
  if (cached) return cached;
  const fields = descriptor(typeName).fields;
  const base = plainMessage(typeName, 0, hint);
  if (fields.length === 0) {
    // Nothing to mutate structurally: unknown fields of every wire type.
    const arb = fc.array(fc.tuple(fc.integer({ min: 1, max: 536_870_911 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), { maxLength: 5 }).map((xs) =>
      encodeWire(xs.map(([number, v]) => ({ number, value: { wire: 0 as const, varint: v } }))),
    );
    mutatedCache.set(cacheKey, arb);
    return arb;
  }
  const mutation = fc
    .record({ field: fc.constantFrom(...fields), kind: fc.constantFrom('replace', 'drop', 'duplicate', 'nested'), pick: fc.nat() })
    .chain((m) => hostileValue(m.field).map((values) => ({ ...m, values })));
  const arb = fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) => {
    let out = [...base];
    for (const m of ms) {
      const others = out.filter((x) => x.number !== m.field.number);
      if (m.kind === 'drop') out = others;
      else if (m.kind === 'duplicate') out = [...out, ...out.filter((x) => x.number === m.field.number)];
      else if (m.kind === 'nested' && m.field.type === 'TYPE_MESSAGE') {
        // One level down: the nested message itself mutated at a field.
        const variants = nestedVariants(qualified(m.field.typeName));
        out = [...others, { number: m.field.number, value: { wire: 2, bytes: variants[m.pick % variants.length]! } }];
      } else out = [...others, ...m.values.map((value) => ({ number: m.field.number, value }))];
    }
    return encodeWire(out);
  });
  mutatedCache.set(cacheKey, arb);
  return arb;
}

/** Random bytes as a whole request, and valid encodings cut short (a truncated frame's payload). */
export function rawGarbage(typeName: string, hint: FieldHints = {}): fc.Arbitrary<Buffer> {
  const valid = encodeWire(plainMessage(typeName, 0, hint));
  return fc.oneof(
    fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b)),
    fc.integer({ min: 0, max: Math.max(0, valid.length - 1) }).map((n) => valid.subarray(0, n)),
  );
}

/** `n` fuzz inputs for a request of `typeName`: about 3/4 mutated messages, 1/4 raw bytes. */
export function fuzzInputs(typeName: string, n: number, seed: number, hint: FieldHints = {}): Buffer[] {
  const arb = fc.oneof({ weight: 3, arbitrary: mutatedMessage(typeName, hint) }, { weight: 1, arbitrary: rawGarbage(typeName, hint) });
  return [encodeWire(plainMessage(typeName, 0, hint)), ...fc.sample(arb, { numRuns: n - 1, seed })];
}
