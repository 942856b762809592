import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bf16ToF32, createSafetensorsWriter, f16ToF32, f32ToBf16, f32ToF16, memorySink, memorySource, openSafetensors } from '../../../aggregation/index.js';

// Interoperability with files made by numpy following the format by hand (no safetensors package).
const dir = mkdtempSync(join(tmpdir(), 'fedhpc-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const python = (script: string, ...args: string[]): string => execFileSync('python3', ['-c', script, ...args], { encoding: 'utf8' });

const WRITE_WITH_NUMPY = String.raw`
import json, struct, sys
import numpy as np
path = sys.argv[1]
rng = np.random.default_rng(7)
src = np.concatenate([rng.standard_normal(38).astype(np.float32) * 3,
                      np.array([0, -0.0, 1e-6, 6e-8, 65504, 65519, -1e-3, 0.1, 3e-5, -2.98e-8], dtype=np.float32)]).astype(np.float32)
f16 = src.astype(np.float16)
u = src.view(np.uint32).astype(np.uint64)
bf16 = ((u + 0x7fff + ((u >> 16) & 1)) >> 16).astype(np.uint16)
blobs = [("w.f32", "F32", [6, 8], src.tobytes()), ("w.f16", "F16", [48], f16.tobytes()), ("w.bf16", "BF16", [2, 24], bf16.tobytes())]
header, at = {"__metadata__": {"format": "pt", "origin": "numpy"}}, 0
for name, dtype, shape, raw in blobs:
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(raw)]}
    at += len(raw)
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(raw for *_, raw in blobs))
print(json.dumps({"src": src.tolist(), "f16": f16.astype(np.float32).tolist(), "f16bits": f16.view(np.uint16).tolist(),
                  "bf16": (bf16.astype(np.uint32) << 16).view(np.float32).tolist(), "bf16bits": bf16.tolist()}))
`;

const READ_WITH_NUMPY = String.raw`
import json, struct, sys
import numpy as np
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
assert n % 8 == 0
header = json.loads(data[8:8 + n])
meta = header.pop("__metadata__")
buf = data[8 + n:]
spans = sorted(tuple(v["data_offsets"]) for v in header.values())
assert spans[0][0] == 0 and spans[-1][1] == len(buf), spans
assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), spans
out = {"meta": meta, "order": [k for k, _ in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])]}
for name, info in header.items():
    b, e = info["data_offsets"]
    raw = np.frombuffer(buf[b:e], dtype={"F32": "<f4", "F16": "<f2", "BF16": "<u2"}[info["dtype"]])
    vals = (raw.astype(np.uint32) << 16).view(np.float32) if info["dtype"] == "BF16" else raw.astype(np.float32)
    assert int(np.prod(info["shape"])) == vals.size
    out[name] = {"shape": info["shape"], "values": vals.tolist()}
print(json.dumps(out))
`;

describe('safetensors interoperability with numpy', () => {
  it('reads a file written by numpy by the format rules, F32, F16 and BF16', async () => {
    const path = join(dir, 'numpy.safetensors');
    const expected = JSON.parse(python(WRITE_WITH_NUMPY, path)) as Record<'src' | 'f16' | 'f16bits' | 'bf16' | 'bf16bits', number[]>;
    const file = await openSafetensors(memorySource(new Uint8Array(readFileSync(path))));
    expect(file.metadata).toEqual({ format: 'pt', origin: 'numpy' });
    expect(file.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([
      ['w.f32', 'F32', [6, 8]],
      ['w.f16', 'F16', [48]],
      ['w.bf16', 'BF16', [2, 24]],
    ]);
    expect(Array.from(await file.readF32('w.f32', 0, 48))).toEqual(expected.src);
    expect(Array.from(await file.readF32('w.f16', 0, 48))).toEqual(expected.f16);
    expect(Array.from(await file.readF32('w.bf16', 0, 48))).toEqual(expected.bf16);
    // Our narrowing agrees bit for bit with numpy's astype(float16) and the RNE bf16 rule.
    const src = Float32Array.from(expected.src);
    expect(Array.from(f32ToF16(src))).toEqual(expected.f16bits);
    expect(Array.from(f32ToBf16(src))).toEqual(expected.bf16bits);
  });

  it('writes files numpy reads back with the same values and metadata', async () => {
    const values = new Float32Array(30).map((_, i) => Math.fround(Math.sin(i) * 100));
    const specs = [
      { name: 'model.norm.weight', dtype: 'F32' as const, shape: [30] },
      { name: 'lm_head.weight', dtype: 'BF16' as const, shape: [5, 6] },
      { name: 'model.embed_tokens.weight', dtype: 'F16' as const, shape: [3, 10] },
    ];
    const sink = memorySink();
    const writer = await createSafetensorsWriter(sink, specs, { format: 'pt', round: '12' });
    for (const s of specs) {
      await writer.writeF32(s.name, values.subarray(0, 11));
      await writer.writeF32(s.name, values.subarray(11));
    }
    await writer.finish();
    const path = join(dir, 'ours.safetensors');
    writeFileSync(path, sink.bytes());
    const read = JSON.parse(python(READ_WITH_NUMPY, path)) as Record<string, unknown> & Record<string, { shape: number[]; values: number[] }>;
    expect(read.meta).toEqual({ format: 'pt', round: '12' });
    expect(read.order).toEqual(specs.map((s) => s.name));
    expect(read['model.norm.weight']).toEqual({ shape: [30], values: Array.from(values) });
    expect(read['lm_head.weight']).toEqual({ shape: [5, 6], values: Array.from(bf16ToF32(f32ToBf16(values))) });
    expect(read['model.embed_tokens.weight']).toEqual({ shape: [3, 10], values: Array.from(f16ToF32(f32ToF16(values))) });
  });
});
