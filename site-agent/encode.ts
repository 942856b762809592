/**
 * The delta Δ = local − global in the run's wire encoding, produced for any byte range of the
 * encoded delta straight from the two safetensors files (never a whole model in memory), or from
 * one f32 file that holds Δ itself (a folded delta, `fold.ts`): a resumed or re-requested stripe
 * re-encodes exactly the bytes it had sent. Encodings are deterministic — the masked one takes its
 * stochastic rounding from a seed fixed per attempt.
 */
import {
  createKernels,
  type DeltaSources,
  encodeInt8Blocks,
  f32ToBf16,
  type Kernels,
  MASK_SLICE_WORDS,
  maskDelta,
  type MaskedEncodeInput,
  type MaskOptions,
  type MaskWords,
  MaskWorkspace,
  openSafetensors,
  type QuantizeOptions,
  quantizeAndMask,
  type SafetensorsFile,
} from '../aggregation/index.js';
import { openFileSource } from '../common/files.js';
import { chunkDataBuffer } from '../proto/index.js';
import { deltaSegments, INT8_BLOCK, type Segment, type DeltaEncoding } from '../aggregation/index.js';
import { SiteAgentError } from './errors.js';
import type { SecureParams, SecureSession } from './secure/session.js';

/** A tensor of the global model as the task declares it. */
export interface TaskTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
}

/** What a masked encoding needs: the attempt's session, the upload's count and a fixed rounding seed. */
export interface MaskedInputs {
  readonly session: SecureSession;
  readonly params: SecureParams;
  /**
   * The count the upload weighs with, in the run's unit: the header's own count, or W of a folded
   * upload (`uploadWeight`) — what the coordinator recomputes from the clear header. The weight
   * word is made of it (`SecureSession.weight`).
   */
  readonly count: number;
  readonly roundingSeed: Uint8Array;
}

/** Where Δ's values come from: element ranges of one tensor, as f32. */
interface DeltaValues {
  read(name: string, first: number, count: number): Promise<Float32Array>;
  /**
   * The same range straight to bf16 wire values, when the source can (F32 or BF16 files): one
   * fused pass, no f32 copies of the two models in between. Bit for bit `f32ToBf16(read(...))`.
   */
  readonly bf16?: ((name: string, first: number, count: number, scratch: ReadScratch) => Promise<Uint16Array | undefined>) | undefined;
  /**
   * The same range as f32 in one fused pass, into the walk's scratch (valid until its next call)
   * unless `fresh`; bit for bit `read(...)`.
   */
  readonly f32?: ((name: string, first: number, count: number, scratch: ReadScratch, fresh: boolean) => Promise<Float32Array | undefined>) | undefined;
  /**
   * The two models' bytes of the range, read into the walk's scratch (valid until its next call),
   * for the masked encoding, which makes Δ from them; undefined where the source cannot (F16 and
   * friends).
   */
  readonly bytes?: ((name: string, first: number, count: number, scratch: ReadScratch) => Promise<DeltaSources | undefined>) | undefined;
}

/**
 * Values per slice of Δ where the process has no native masker: 512 KiB of f32, which stays in a core's L2
 * beside the mask kernels' window, where a whole chunk's f32 Δ (8 MiB for a 4 MiB chunk of 16-bit
 * words) went out to memory between the delta and the masking and was read back (measured: the
 * masked encoding of 2 M bf16 values 5.5–5.9 ms against 6.2–6.6; bench/RESULTS.md, session 19).
 */
const VALUE_SLICE = 4 * MASK_SLICE_WORDS;

/**
 * Read buffers one `range` walk reuses from chunk to chunk (a stripe's walk is sequential; stripes
 * walk concurrently, each with its own): the two models' bytes are read into them, not into a
 * fresh buffer per chunk, so a GB sent leaves a GB less garbage behind.
 */
class ReadScratch {
  private global = Buffer.alloc(0);
  private local = Buffer.alloc(0);
  private values = new Float32Array(0);
  private slice = new Float32Array(0);

  /** An f32 buffer of `count` values, reused by the walk's next chunk. */
  f32(count: number): Float32Array {
    if (this.values.length < count) this.values = new Float32Array(count);
    return this.values.subarray(0, count);
  }

  /** An f32 buffer of `count` ≤ {@link VALUE_SLICE} values for one slice, reused by the next. */
  f32Slice(count: number): Float32Array {
    if (this.slice.length < count) this.slice = new Float32Array(VALUE_SLICE);
    return this.slice.subarray(0, count);
  }

  /** The two buffers, grown to at least these sizes, as views of exactly them. */
  take(globalBytes: number, localBytes: number): { global: Buffer; local: Buffer } {
    if (this.global.length < globalBytes) this.global = Buffer.allocUnsafeSlow(globalBytes);
    if (this.local.length < localBytes) this.local = Buffer.allocUnsafeSlow(localBytes);
    return { global: this.global.subarray(0, globalBytes), local: this.local.subarray(0, localBytes) };
  }
}

/** `count` f32 values in a buffer with room for the chunk message around them (no copy when sent). */
function f32Room(count: number): Float32Array {
  const room = chunkDataBuffer(count * 4);
  return new Float32Array(room.buffer, room.byteOffset, count);
}

/** The SIMD kernels of the fused delta, made on first use; every call is synchronous. */
let deltaKernels: Kernels | undefined;

/** One chunk of the encoded delta; it never spans two tensors. */
export interface EncodedChunk {
  readonly offset: number;
  readonly data: Buffer;
  /** Index of the tensor (segment) the chunk belongs to. */
  readonly segment: number;
}

const elementsOf = (t: TaskTensor): number => t.shape.reduce((a, b) => a * b, 1);

/** The delta of two safetensors files, encodable by byte range. */
export class DeltaEncoder {
  readonly segments: readonly Segment[];
  readonly totalBytes: number;
  private readonly elementStarts: number[] = [];
  private readonly elements: number;
  private maskKitMemo: { masks: MaskOptions; workspace: MaskWorkspace } | undefined;

  private constructor(
    private readonly values: DeltaValues,
    private readonly tensors: readonly TaskTensor[],
    readonly encoding: DeltaEncoding,
    /** With the weight w of the masked encoding: Δ is sent as w·clip(Δ, −c, c), and w as the weight word. */
    private readonly masked: (MaskedInputs & { readonly weight: number }) | undefined,
    private readonly closeFiles: () => Promise<void>,
  ) {
    this.segments = deltaSegments(encoding, tensors.map(elementsOf));
    this.totalBytes = this.segments.length === 0 ? 0 : this.segments[this.segments.length - 1]!.end;
    let n = 0;
    for (const t of tensors) {
      this.elementStarts.push(n);
      n += elementsOf(t);
    }
    this.elements = n;
  }

  /**
   * Opens the two files. Throws MODEL_INVALID when the local file's names or shapes differ from
   * the global model's, or when the encoding is unknown; a masked encoding whose count exceeds the
   * run's maxSiteWeight throws WEIGHT_OUT_OF_RANGE before anything is read.
   */
  static async open(globalPath: string, localPath: string, tensors: readonly TaskTensor[], encoding: string, masked?: MaskedInputs): Promise<DeltaEncoder> {
    const weighted = weightedInputs(encoding, masked);
    const gSrc = await openFileSource(globalPath);
    const lSrc = await openFileSource(localPath);
    const close = async (): Promise<void> => {
      await gSrc.close();
      await lSrc.close();
    };
    try {
      const g = await openSafetensors(gSrc);
      const l = await openSafetensors(lSrc);
      for (const t of tensors) {
        const gi = g.tensor(t.name);
        const li = l.tensors.find((x) => x.name === t.name);
        if (!li || li.shape.join() !== gi.shape.join()) {
          throw new SiteAgentError('MODEL_INVALID', `local model's tensor ${t.name} is ${li ? `[${li.shape.join(', ')}]` : 'missing'}, global is [${gi.shape.join(', ')}]`, false);
        }
      }
      if (l.tensors.length !== tensors.length) throw new SiteAgentError('MODEL_INVALID', `local model has ${l.tensors.length} tensors, global has ${tensors.length}`, false);
      return new DeltaEncoder(differenceOf(g, l), tensors, encoding as DeltaEncoding, weighted, close);
    } catch (err) {
      await close();
      throw err;
    }
  }

  /**
   * Opens a file that holds Δ itself: F32 tensors named and shaped as the task's (a folded delta,
   * `fold.ts`). Throws as {@link open} does.
   */
  static async openDelta(deltaPath: string, tensors: readonly TaskTensor[], encoding: string, masked?: MaskedInputs): Promise<DeltaEncoder> {
    const weighted = weightedInputs(encoding, masked);
    const src = await openFileSource(deltaPath);
    try {
      const d = await openSafetensors(src);
      for (const t of tensors) {
        const di = d.tensors.find((x) => x.name === t.name);
        if (!di || di.dtype !== 'F32' || di.shape.join() !== t.shape.join()) {
          throw new SiteAgentError('MODEL_INVALID', `delta file's tensor ${t.name} is ${di ? `${di.dtype} [${di.shape.join(', ')}]` : 'missing'}, the task's is F32 [${t.shape.join(', ')}]`, false);
        }
      }
      if (d.tensors.length !== tensors.length) throw new SiteAgentError('MODEL_INVALID', `delta file has ${d.tensors.length} tensors, the task ${tensors.length}`, false);
      return new DeltaEncoder({ read: (name, first, count) => d.readF32(name, first, count) }, tensors, encoding as DeltaEncoding, weighted, () => src.close());
    } catch (err) {
      await src.close();
      throw err;
    }
  }

  close(): Promise<void> {
    return this.closeFiles();
  }

  /** Chunks of at most `chunkBytes` covering [start, end), both on value (int8: block) boundaries. */
  async *range(start: number, end: number, chunkBytes: number, signal: AbortSignal): AsyncGenerator<EncodedChunk> {
    const scratch = new ReadScratch();
    for (const s of this.segments) {
      const a = Math.max(s.start, start);
      const b = Math.min(s.end, end);
      if (a >= b) continue;
      const perChunk = Math.max(1, Math.floor(chunkBytes / s.unit)) * s.unit;
      for (let at = a; at < b; at += perChunk) {
        signal.throwIfAborted();
        const to = Math.min(b, at + perChunk);
        yield { offset: at, data: await this.encode(s, at - s.start, to - s.start, scratch), segment: s.index };
      }
    }
  }

  /** Encodes bytes [from, to) of segment `s` (offsets relative to the segment, unit-aligned). */
  private async encode(s: Segment, from: number, to: number, scratch: ReadScratch): Promise<Buffer> {
    if (s.index === this.tensors.length) return this.weightWord();
    const t = this.tensors[s.index]!;
    const n = elementsOf(t);
    const first = this.encoding === 'int8' ? (from / s.unit) * INT8_BLOCK : from / s.unit;
    const last = this.encoding === 'int8' ? Math.min(n, (Math.ceil(to / s.unit)) * INT8_BLOCK) : to / s.unit;
    if (this.encoding === 'bf16') {
      const fused = await this.values.bf16?.(t.name, first, last - first, scratch);
      if (fused) return Buffer.from(fused.buffer, fused.byteOffset, fused.byteLength);
    }
    if ((this.encoding === 'secagg32' || this.encoding === 'secagg16') && this.values.bytes !== undefined) {
      const sources = await this.values.bytes(t.name, first, last - first, scratch);
      if (sources) return this.maskedFromBytes(sources, this.elementStarts[s.index]! + first, scratch);
    }
    // f32 goes on the wire as it is, so it needs a buffer of its own; the others encode from it.
    const fused = await this.values.f32?.(t.name, first, last - first, scratch, this.encoding === 'f32');
    const delta = fused ?? (await this.values.read(t.name, first, last - first));
    switch (this.encoding) {
      case 'f32':
        return Buffer.from(delta.buffer, delta.byteOffset, delta.byteLength);
      case 'bf16': {
        const out = f32ToBf16(delta);
        return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
      }
      case 'int8': {
        // The one int8 block format (aggregation/kernels/encoding.ts), decoded by the coordinator.
        const out = encodeInt8Blocks(delta);
        return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
      }
      default:
        return this.maskedWords(delta, this.elementStarts[s.index]! + first);
    }
  }

  /**
   * The masked words of Δ made from the two models' bytes, whose first value is word `wordOffset`
   * of the whole delta: by the native masker, which keeps Δ in L1 and writes each word once, or,
   * where the process has none, a slice of Δ at a time, each masked while it is in cache.
   */
  private maskedFromBytes(sources: DeltaSources, wordOffset: number, scratch: ReadScratch): Buffer {
    const count = sources.local.length / (sources.localBf16 ? 2 : 4);
    const { room, words } = this.maskedRoom(count);
    if (maskDelta(sources, this.quantizeOptions(), this.maskInput(wordOffset), words)) return room;
    const [ls, ld] = sources.localBf16 ? ([2, 'BF16'] as const) : ([4, 'F32'] as const);
    const [gs, gd] = sources.globalBf16 ? ([2, 'BF16'] as const) : ([4, 'F32'] as const);
    const kernels = (deltaKernels ??= createKernels());
    for (let from = 0; from < count; from += VALUE_SLICE) {
      const n = Math.min(VALUE_SLICE, count - from);
      const x = scratch.f32Slice(n);
      kernels.deltaToF32(x, sources.local.subarray(from * ls, (from + n) * ls), ld, sources.global.subarray(from * gs, (from + n) * gs), gd);
      this.maskInto(x, wordOffset + from, words.subarray(from, from + n));
    }
    return room;
  }

  private maskedWords(x: Float32Array, wordOffset: number): Buffer {
    const { room, words } = this.maskedRoom(x.length);
    this.maskInto(x, wordOffset, words);
    return room;
  }

  /**
   * A buffer for `count` masked words, one the upload codec writes the chunk message around (no
   * copy), and the words in it.
   */
  private maskedRoom(count: number): { room: Buffer; words: MaskWords } {
    const bits = this.masked!.params.modulusBits;
    const room = chunkDataBuffer(count * (bits / 8));
    return { room, words: bits === 32 ? new Uint32Array(room.buffer, room.byteOffset, count) : new Uint16Array(room.buffer, room.byteOffset, count) };
  }

  /**
   * Quantises, weighs and masks x, whose first value is word `wordOffset` of the whole delta, into
   * `out` in one pass per slice (the words of quantize + maskVector, bit for bit).
   */
  private maskInto(x: Float32Array, wordOffset: number, out: MaskWords): void {
    quantizeAndMask(x, this.quantizeOptions(), this.maskInput(wordOffset), this.maskKit().workspace, out);
  }

  private quantizeOptions(): QuantizeOptions {
    const { clip, quantBits, modulusBits } = this.masked!.params;
    return { clip, quantBits, modulusBits };
  }

  /** The masks, weight and rounding seed of the words from `wordOffset` on. */
  private maskInput(wordOffset: number): MaskedEncodeInput {
    const m = this.masked!;
    return { ...this.maskKit().masks, weight: m.weight, roundingSeed: m.roundingSeed, wordOffset };
  }

  /** The masked weight word that ends a secure upload, so the coordinator learns only Σw. */
  private weightWord(): Buffer {
    const m = this.masked!;
    const q = { clip: 1, quantBits: m.params.quantBits, modulusBits: m.params.modulusBits };
    const w = new Float32Array([m.weight]);
    const masked = quantizeAndMask(w, q, { ...this.maskKit().masks, weight: 1, roundingSeed: m.roundingSeed, wordOffset: this.elements }, this.maskKit().workspace);
    return Buffer.from(masked.buffer, masked.byteOffset, masked.byteLength);
  }

  /**
   * The attempt's mask seeds and the encoder's workspace, made at the first masked chunk: the seeds
   * cost one X25519 agreement per neighbour, which every chunk used to pay again.
   */
  private maskKit(): { masks: MaskOptions; workspace: MaskWorkspace } {
    this.maskKitMemo ??= { masks: this.masked!.session.masks(), workspace: new MaskWorkspace() };
    return this.maskKitMemo;
  }
}

/** Checks the encoding and, for a masked one, computes the weight once (WEIGHT_OUT_OF_RANGE before anything is read). */
function weightedInputs(encoding: string, masked: MaskedInputs | undefined): (MaskedInputs & { readonly weight: number }) | undefined {
  if (!['f32', 'bf16', 'int8', 'secagg32', 'secagg16'].includes(encoding)) throw new SiteAgentError('MODEL_INVALID', `unknown wire encoding ${JSON.stringify(encoding)}`, false);
  if (encoding.startsWith('secagg') && !masked) throw new SiteAgentError('MODEL_INVALID', `encoding ${encoding} needs a secure session`, false);
  return masked ? { ...masked, weight: masked.session.weight(masked.count) } : undefined;
}

/** Δ = local − global, element by element in f32 (the one rounding every delta of the agent has). */
function differenceOf(g: SafetensorsFile, l: SafetensorsFile): DeltaValues {
  const fusable = (dtype: string): dtype is 'F32' | 'BF16' => dtype === 'F32' || dtype === 'BF16';
  /** Both files' bytes of the range, read into the walk's scratch; undefined for F16 and friends (the general path). */
  const rawBytes = async (name: string, first: number, count: number, scratch: ReadScratch) => {
    const gd = g.tensor(name).dtype;
    const ld = l.tensor(name).dtype;
    if (!fusable(gd) || !fusable(ld)) return undefined;
    const gs = gd === 'F32' ? 4 : 2;
    const ls = ld === 'F32' ? 4 : 2;
    const into = scratch.take(count * gs, count * ls);
    const [global, local] = await Promise.all([g.readBytesInto(name, first * gs, into.global), l.readBytesInto(name, first * ls, into.local)]);
    return { global, gd, gs, local, ld, ls };
  };
  return {
    async bytes(name, first, count, scratch) {
      const b = await rawBytes(name, first, count, scratch);
      return b && { local: b.local, localBf16: b.ld === 'BF16', global: b.global, globalBf16: b.gd === 'BF16' };
    },
    async read(name, first, count) {
      const global = await g.readF32(name, first, count);
      const local = await l.readF32(name, first, count);
      for (let i = 0; i < count; i++) local[i] = local[i]! - global[i]!;
      return local;
    },
    async bf16(name, first, count, scratch) {
      const bytes = await rawBytes(name, first, count, scratch);
      if (!bytes) return undefined;
      const room = chunkDataBuffer(count * 2);
      const out = new Uint16Array(room.buffer, room.byteOffset, count);
      (deltaKernels ??= createKernels()).deltaToBf16(out, bytes.local, bytes.ld, bytes.global, bytes.gd);
      return out;
    },
    async f32(name, first, count, scratch, fresh) {
      const bytes = await rawBytes(name, first, count, scratch);
      if (!bytes) return undefined;
      const out = fresh ? f32Room(count) : scratch.f32(count);
      (deltaKernels ??= createKernels()).deltaToF32(out, bytes.local, bytes.ld, bytes.global, bytes.gd);
      return out;
    },
  };
}
