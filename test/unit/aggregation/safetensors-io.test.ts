import { describe, expect, it } from 'vitest';
import {
  AggregationError,
  type AggregationErrorCode,
  type ByteSource,
  type Dtype,
  bf16ToF32,
  createSafetensorsWriter,
  encodeFromF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  memorySink,
  memorySource,
  openSafetensors,
  parseSafetensorsHeader,
} from '../../../aggregation/index.js';

async function expectCode(promise: Promise<unknown>, code: AggregationErrorCode): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AggregationError);
  expect((error as AggregationError).code).toBe(code);
}

const ramp = (n: number, scale = 0.37): Float32Array => new Float32Array(n).map((_, i) => Math.fround((i - n / 2) * scale));

async function writeFile(tensors: { name: string; dtype: Dtype; shape: number[]; values: Float32Array }[], metadata?: Record<string, string>): Promise<Uint8Array> {
  const sink = memorySink();
  const writer = await createSafetensorsWriter(sink, tensors, metadata);
  for (const t of tensors) {
    // Stream each tensor in uneven pieces.
    for (let at = 0; at < t.values.length; at += 7) await writer.writeF32(t.name, t.values.subarray(at, at + 7));
  }
  const { bytesWritten } = await writer.finish();
  expect(bytesWritten).toBe(writer.fileSize);
  return sink.bytes();
}

describe('safetensors writer and reader', () => {
  it('round-trips F32 exactly and BF16/F16 to the nearest representable value', async () => {
    const values = ramp(50);
    const bytes = await writeFile([
      { name: 'w.f32', dtype: 'F32', shape: [5, 10], values },
      { name: 'w.bf16', dtype: 'BF16', shape: [50], values },
      { name: 'w.f16', dtype: 'F16', shape: [2, 25], values },
    ]);
    const file = await openSafetensors(memorySource(bytes));
    expect(file.metadata).toEqual({ format: 'pt' });
    expect(file.tensors.map((t) => t.name)).toEqual(['w.f32', 'w.bf16', 'w.f16']);
    expect(await file.readF32('w.f32', 0, 50)).toEqual(values);
    expect(await file.readF32('w.bf16', 0, 50)).toEqual(bf16ToF32(f32ToBf16(values)));
    expect(await file.readF32('w.f16', 0, 50)).toEqual(f16ToF32(f32ToF16(values)));
    expect(await file.readF32('w.f16', 10, 3)).toEqual(f16ToF32(f32ToF16(values.slice(10, 13))));
  });

  it('reads a slice into a caller\'s array, in place of a fresh one: F32 straight from a source that fills buffers, BF16 and F16 decoded into it', async () => {
    const values = ramp(50);
    const bytes = await writeFile([
      { name: 'w.f32', dtype: 'F32', shape: [50], values },
      { name: 'w.bf16', dtype: 'BF16', shape: [50], values },
      { name: 'w.f16', dtype: 'F16', shape: [50], values },
    ]);
    const inner = memorySource(bytes);
    const filled: number[] = [];
    const source: ByteSource = {
      size: inner.size,
      read: (o, l) => inner.read(o, l),
      readInto: async (o, target) => {
        filled.push(target.length);
        target.set(await inner.read(o, target.length));
        return target;
      },
    };
    const file = await openSafetensors(source);
    const room = new Float32Array(20).fill(7);
    const into = room.subarray(4, 16);
    expect(await file.readF32('w.f32', 30, 12, into)).toBe(into);
    expect(into).toEqual(values.slice(30, 42));
    expect(filled).toEqual([48]);
    expect(await file.readF32('w.bf16', 30, 12, into)).toBe(into);
    expect(into).toEqual(bf16ToF32(f32ToBf16(values.slice(30, 42))));
    expect(await file.readF32('w.f16', 30, 12, into)).toBe(into);
    expect(into).toEqual(f16ToF32(f32ToF16(values.slice(30, 42))));
    // Nothing outside the caller's view was touched.
    expect([...room.subarray(0, 4), ...room.subarray(16)]).toEqual(new Array(8).fill(7));
    await expectCode(file.readF32('w.f32', 0, 12, new Float32Array(11)), 'TENSOR_MISMATCH');
  });

  it('narrows into a caller\'s scratch, and refuses one too small', () => {
    const values = ramp(9);
    const scratch = new Uint16Array(16);
    const bf16 = encodeFromF32(values, 'BF16', scratch);
    expect(bf16.buffer).toBe(scratch.buffer);
    expect(Array.from(new Uint16Array(bf16.buffer, bf16.byteOffset, 9))).toEqual(Array.from(f32ToBf16(values)));
    const f16 = encodeFromF32(values, 'F16', scratch);
    expect(Array.from(new Uint16Array(f16.buffer, f16.byteOffset, 9))).toEqual(Array.from(f32ToF16(values)));
    expect(() => encodeFromF32(values, 'BF16', new Uint16Array(8))).toThrow(AggregationError);
  });

  it('pads the header with spaces to a multiple of 8 and keeps given metadata', async () => {
    const bytes = await writeFile([{ name: 'x', dtype: 'F32', shape: [1], values: Float32Array.of(1) }], { format: 'pt', round: '3' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    expect(bytes[8 + n - 1]).toBe(0x20);
    const parsed = parseSafetensorsHeader(bytes, bytes.length);
    expect(parsed.ok && parsed.value.metadata).toEqual({ format: 'pt', round: '3' });
  });

  it('keeps declared order even for integer-like tensor names', async () => {
    const bytes = await writeFile([
      { name: 'b', dtype: 'F32', shape: [1], values: Float32Array.of(1) },
      { name: '0', dtype: 'F32', shape: [1], values: Float32Array.of(2) },
    ]);
    const file = await openSafetensors(memorySource(bytes));
    expect(file.tensors.map((t) => t.name)).toEqual(['b', '0']);
    expect(Array.from(await file.readF32('0', 0, 1))).toEqual([2]);
  });

  it('returns a copy the caller may mutate without touching the source', async () => {
    const bytes = await writeFile([{ name: 'x', dtype: 'F32', shape: [2], values: Float32Array.of(1, 2) }]);
    const file = await openSafetensors(memorySource(bytes));
    (await file.readF32('x', 0, 2)).fill(9);
    expect(Array.from(await file.readF32('x', 0, 2))).toEqual([1, 2]);
  });

  it('reads only the bytes a tensor slice needs', async () => {
    const big = ramp(100_000);
    const bytes = await writeFile([
      { name: 'a', dtype: 'F32', shape: [100_000], values: big },
      { name: 'b', dtype: 'BF16', shape: [100_000], values: big },
    ]);
    const reads: [number, number][] = [];
    const inner = memorySource(bytes);
    const counting: ByteSource = { size: inner.size, read: (offset, length) => (reads.push([offset, length]), inner.read(offset, length)) };
    const file = await openSafetensors(counting);
    const headerRead = reads.reduce((s, [, l]) => s + l, 0);
    expect(headerRead).toBe(file.dataOffset);
    reads.length = 0;
    const slice = await file.readF32('b', 500, 10);
    expect(reads).toEqual([[file.tensor('b').byteOffset + 1000, 20]]);
    expect(slice).toEqual(bf16ToF32(f32ToBf16(big.slice(500, 510))));
    reads.length = 0;
    await file.readBytes('a', 4, 8);
    expect(reads).toEqual([[file.tensor('a').byteOffset + 4, 8]]);
  });

  it('refuses slices outside a tensor, unknown tensors and non-float dtypes', async () => {
    const sink = memorySink();
    const writer = await createSafetensorsWriter(sink, [
      { name: 'x', dtype: 'F32', shape: [2] },
      { name: 'ids', dtype: 'I32', shape: [1] },
    ]);
    await writer.writeF32('x', Float32Array.of(1, 2));
    await writer.writeTensorBytes('ids', new Uint8Array(4));
    await writer.finish();
    const file = await openSafetensors(memorySource(sink.bytes()));
    await expectCode(file.readF32('x', 1, 2), 'OUT_OF_RANGE');
    await expectCode(file.readBytes('x', -1, 2), 'OUT_OF_RANGE');
    await expectCode(file.readF32('nope', 0, 1), 'TENSOR_UNKNOWN');
    await expectCode(file.readF32('ids', 0, 1), 'SAFETENSORS_DTYPE_UNSUPPORTED');
  });

  it('reports a short read from the source as truncation', async () => {
    const bytes = await writeFile([{ name: 'x', dtype: 'F32', shape: [4], values: ramp(4) }]);
    const inner = memorySource(bytes);
    const file = await openSafetensors({ size: inner.size, read: async (o, l) => (await inner.read(o, l)).subarray(0, o >= 16 ? l - 1 : l) });
    await expectCode(file.readF32('x', 0, 4), 'SAFETENSORS_TRUNCATED');
  });
});

describe('safetensors writer rules', () => {
  const specs = [
    { name: 'a', dtype: 'F32' as const, shape: [2] },
    { name: 'empty', dtype: 'F32' as const, shape: [0] },
    { name: 'b', dtype: 'BF16' as const, shape: [3] },
  ];

  it('refuses data for a tensor out of declared order', async () => {
    const writer = await createSafetensorsWriter(memorySink(), specs);
    await expectCode(writer.writeTensorBytes('b', new Uint8Array(2)), 'WRITER_ORDER');
    await writer.writeF32('a', Float32Array.of(1, 2));
    await expectCode(writer.writeF32('a', Float32Array.of(3)), 'WRITER_ORDER');
  });

  it('refuses more bytes than a tensor holds', async () => {
    const writer = await createSafetensorsWriter(memorySink(), specs);
    await writer.writeTensorBytes('a', new Uint8Array(4));
    await expectCode(writer.writeTensorBytes('a', new Uint8Array(8)), 'WRITER_OVERFLOW');
  });

  it('refuses to finish before every tensor is complete, and writes after finishing', async () => {
    const writer = await createSafetensorsWriter(memorySink(), specs);
    await writer.writeF32('a', Float32Array.of(1, 2));
    await writer.writeF32('b', Float32Array.of(1));
    await expectCode(writer.finish(), 'WRITER_INCOMPLETE');
    await writer.writeF32('b', Float32Array.of(2, 3));
    await writer.finish();
    await expectCode(writer.writeTensorBytes('b', new Uint8Array(0)), 'WRITER_CLOSED');
  });

  it('refuses a write while the previous one is pending', async () => {
    let release: () => void = () => undefined;
    let calls = 0;
    const slow = { write: () => (++calls === 1 ? Promise.resolve() : new Promise<void>((r) => (release = r))) };
    const writer = await createSafetensorsWriter(slow, specs);
    const first = writer.writeTensorBytes('a', new Uint8Array(4));
    await expectCode(writer.writeTensorBytes('a', new Uint8Array(4)), 'WRITER_ORDER');
    release();
    await first;
  });

  it('refuses repeated names and bad shapes in the declaration', async () => {
    await expectCode(createSafetensorsWriter(memorySink(), [specs[0]!, specs[0]!]), 'INVALID_ARGUMENT');
    await expectCode(createSafetensorsWriter(memorySink(), [{ name: 'x', dtype: 'F32', shape: [-1] }]), 'INVALID_ARGUMENT');
  });
});
