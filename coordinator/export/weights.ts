/**
 * The exported weights: the checkpoint's tensors in the export dtype, in one `model.safetensors`
 * or in shards of at most `shardLimitBytes` of tensor data each with `model.safetensors.index.json`
 * (Hugging Face's sharded layout: `model-00001-of-00003.safetensors`, a weight map by tensor name).
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { createSafetensorsWriter, dtypeSize, encodeFromF32, type FloatDtype, type SafetensorsFile, type SafetensorsTensorInfo } from '../../aggregation/index.js';

/** Hugging Face's default shard limit (`max_shard_size="5GB"`). */
export const HF_SHARD_LIMIT_BYTES = 5_000_000_000;

/** Elements converted at a time: bounds the memory an export holds whatever the model's size. */
const PIECE_ELEMENTS = 1 << 22;

/** One written weights file. */
export interface WeightsFile {
  readonly name: string;
  readonly tensors: readonly string[];
}

/**
 * Groups tensors, in checkpoint order, into shards of at most `limit` bytes of data; a tensor larger
 * than the limit has a shard of its own (as transformers does).
 */
export function planShards(tensors: readonly { name: string; bytes: number }[], limit: number): string[][] {
  const shards: string[][] = [];
  let size = 0;
  for (const t of tensors) {
    const last = shards.at(-1);
    if (last === undefined || size + t.bytes > limit) {
      shards.push([t.name]);
      size = t.bytes;
    } else {
      last.push(t.name);
      size += t.bytes;
    }
  }
  return shards;
}

/** The bytes of `info` in `dtype`, piece by piece: raw when the dtype is the checkpoint's, else through f32. */
export async function* tensorPieces(src: SafetensorsFile, info: SafetensorsTensorInfo, dtype: FloatDtype): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < info.elements; at += PIECE_ELEMENTS) {
    const n = Math.min(PIECE_ELEMENTS, info.elements - at);
    if (info.dtype === dtype) yield await src.readBytes(info.name, at * dtypeSize(dtype), n * dtypeSize(dtype));
    else yield encodeFromF32(await src.readF32(info.name, at, n), dtype);
  }
}

/** The dtype each tensor is written in: `dtype` when given, else the checkpoint's own. */
export const exportDtype = (info: SafetensorsTensorInfo, dtype: FloatDtype | undefined): FloatDtype => dtype ?? (info.dtype as FloatDtype);

/** Writes the weights into `dir`; returns the files written (the index last, when sharded). */
export async function writeWeights(dir: string, src: SafetensorsFile, dtype: FloatDtype | undefined, limit: number): Promise<WeightsFile[]> {
  const sized = src.tensors.map((t) => ({ name: t.name, bytes: t.elements * dtypeSize(exportDtype(t, dtype)) }));
  const shards = planShards(sized, limit);
  const names = shards.length === 1 ? ['model.safetensors'] : shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
  const files: WeightsFile[] = [];
  for (const [i, shard] of shards.entries()) {
    const infos = shard.map((n) => src.tensor(n));
    await writeFile(join(dir, names[i]!), infos, src, dtype);
    files.push({ name: names[i]!, tensors: shard });
  }
  if (shards.length > 1) {
    const weightMap = Object.fromEntries(files.flatMap((f) => f.tensors.map((t) => [t, f.name])));
    const total = sized.reduce((a, t) => a + t.bytes, 0);
    const index = { metadata: { total_size: total }, weight_map: weightMap };
    const h = await open(join(dir, 'model.safetensors.index.json'), 'wx');
    await h.writeFile(`${JSON.stringify(index, null, 2)}\n`);
    await h.close();
    files.push({ name: 'model.safetensors.index.json', tensors: [] });
  }
  return files;
}

async function writeFile(path: string, infos: readonly SafetensorsTensorInfo[], src: SafetensorsFile, dtype: FloatDtype | undefined): Promise<void> {
  const h = await open(path, 'wx');
  try {
    const sink = {
      write: async (b: Uint8Array): Promise<void> => {
        for (let done = 0; done < b.length; ) done += (await h.write(b, done, b.length - done)).bytesWritten;
      },
    };
    const w = await createSafetensorsWriter(sink, infos.map((t) => ({ name: t.name, dtype: exportDtype(t, dtype), shape: t.shape })), { format: 'pt' });
    for (const t of infos) for await (const piece of tensorPieces(src, t, exportDtype(t, dtype))) await w.writeTensorBytes(t.name, piece);
    await w.finish();
    await h.sync();
  } finally {
    await h.close();
  }
}
