import { describe, expect, it } from 'vitest';
import {
  AggregationError,
  type AggregationErrorCode,
  memorySource,
  openSafetensors,
  parseSafetensorsHeader,
} from '../../../aggregation/index.js';

/** A file with the given header JSON (padded to 8) followed by `dataLength` zero bytes. */
function fileWith(header: unknown, dataLength: number, rawJson?: string): Uint8Array {
  const json = new TextEncoder().encode(rawJson ?? JSON.stringify(header));
  const n = Math.ceil(json.length / 8) * 8;
  const bytes = new Uint8Array(8 + n + dataLength).fill(0x20, 8, 8 + n);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(n), true);
  bytes.set(json, 8);
  bytes.fill(0, 8 + n);
  return bytes;
}

async function expectRejected(bytes: Uint8Array, code: AggregationErrorCode, mention?: string): Promise<void> {
  const parsed = parseSafetensorsHeader(bytes, bytes.length);
  expect(parsed.ok).toBe(false);
  if (parsed.ok) return;
  expect(parsed.code).toBe(code);
  if (mention !== undefined) expect(parsed.issues.join('\n')).toContain(mention);
  const error = await openSafetensors(memorySource(bytes)).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(AggregationError);
  expect((error as AggregationError).code).toBe(code);
  expect((error as AggregationError).context.issues).toEqual(parsed.issues);
}

const t = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });

describe('parseSafetensorsHeader', () => {
  it('accepts a valid header and returns tensors in data order with absolute offsets', () => {
    const bytes = fileWith({ __metadata__: { format: 'pt' }, b: t('F16', [2], 8, 12), a: t('F32', [2], 0, 8) }, 12);
    const parsed = parseSafetensorsHeader(bytes, bytes.length);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    const { dataOffset, tensors, metadata } = parsed.value;
    expect(metadata).toEqual({ format: 'pt' });
    expect(tensors.map((x) => [x.name, x.byteOffset - dataOffset, x.byteLength, x.elements])).toEqual([
      ['a', 0, 8, 2],
      ['b', 8, 4, 2],
    ]);
  });

  it('accepts scalars and empty tensors', () => {
    const bytes = fileWith({ s: t('I64', [], 0, 8), e: t('F32', [0, 3], 8, 8) }, 8);
    const parsed = parseSafetensorsHeader(bytes, bytes.length);
    expect(parsed.ok && parsed.value.tensors.map((x) => x.elements)).toEqual([1, 0]);
  });

  it('rejects overlapping offsets', async () => {
    await expectRejected(fileWith({ a: t('F32', [2], 0, 8), b: t('F32', [2], 4, 12) }, 12), 'SAFETENSORS_OFFSETS_INVALID', 'overlaps');
  });

  it('rejects a hole between tensors', async () => {
    await expectRejected(fileWith({ a: t('F32', [1], 0, 4), b: t('F32', [1], 8, 12) }, 12), 'SAFETENSORS_OFFSETS_INVALID', 'hole');
  });

  it('rejects a hole before the first tensor', async () => {
    await expectRejected(fileWith({ a: t('F32', [1], 4, 8) }, 8), 'SAFETENSORS_OFFSETS_INVALID', 'hole');
  });

  it('rejects offsets past the end of the data buffer', async () => {
    await expectRejected(fileWith({ a: t('F32', [4], 0, 16) }, 8), 'SAFETENSORS_OFFSETS_INVALID', 'past the end');
  });

  it('rejects bytes after the last tensor', async () => {
    await expectRejected(fileWith({ a: t('F32', [1], 0, 4) }, 8), 'SAFETENSORS_OFFSETS_INVALID', 'after the last tensor');
  });

  it('rejects negative or reversed offsets', async () => {
    await expectRejected(fileWith({ a: t('F32', [1], 4, 0) }, 4), 'SAFETENSORS_OFFSETS_INVALID');
    await expectRejected(fileWith({ a: t('F32', [1], -4, 0) }, 4), 'SAFETENSORS_OFFSETS_INVALID');
  });

  it('rejects a header length past the end of the file', async () => {
    const bytes = fileWith({ a: t('F32', [1], 0, 4) }, 4);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(bytes.length), true);
    await expectRejected(bytes, 'SAFETENSORS_TRUNCATED', 'past the end');
  });

  it('rejects a header length over 100 MB', async () => {
    const bytes = fileWith({}, 0);
    new DataView(bytes.buffer).setBigUint64(0, 100_000_001n, true);
    await expectRejected(bytes, 'SAFETENSORS_HEADER_INVALID', 'exceeds');
  });

  it('rejects a file shorter than the length prefix', async () => {
    await expectRejected(new Uint8Array(5), 'SAFETENSORS_TRUNCATED');
  });

  it('rejects an unknown dtype, naming it', async () => {
    await expectRejected(fileWith({ a: t('F8_E4M3', [1], 0, 1) }, 1), 'SAFETENSORS_DTYPE_UNSUPPORTED', '"F8_E4M3"');
  });

  it('rejects a byte length that does not match dtype and shape', async () => {
    await expectRejected(fileWith({ a: t('BF16', [3], 0, 4) }, 4), 'SAFETENSORS_OFFSETS_INVALID', 'needs 6');
  });

  it('rejects non-integer or negative shapes', async () => {
    await expectRejected(fileWith({ a: t('F32', [1.5], 0, 4) }, 4), 'SAFETENSORS_HEADER_INVALID', 'shape');
    await expectRejected(fileWith({ a: t('F32', [-1], 0, 4) }, 4), 'SAFETENSORS_HEADER_INVALID', 'shape');
  });

  it('rejects JSON that is not an object', async () => {
    await expectRejected(fileWith(undefined, 0, '[1, 2]'), 'SAFETENSORS_HEADER_INVALID');
    await expectRejected(fileWith(undefined, 0, '{"a": '), 'SAFETENSORS_HEADER_INVALID', 'JSON');
  });

  it('rejects metadata values that are not strings', async () => {
    await expectRejected(fileWith({ __metadata__: { step: 3 } }, 0), 'SAFETENSORS_HEADER_INVALID', '__metadata__.step');
  });

  it('rejects unknown tensor fields', async () => {
    await expectRejected(fileWith({ a: { ...t('F32', [1], 0, 4), extra: 1 } }, 4), 'SAFETENSORS_HEADER_INVALID', 'extra');
  });

  it('rejects invalid UTF-8 in the header', async () => {
    const bytes = fileWith({ ab: t('U8', [0], 0, 0) }, 0);
    bytes[10] = 0xff; // inside the tensor name
    await expectRejected(bytes, 'SAFETENSORS_HEADER_INVALID');
  });
});
