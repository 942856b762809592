/**
 * fedhpc's native kernels (native/*.c, Node-API): those that touch every byte of a round where
 * JavaScript and WebAssembly cannot do them at the machine's speed (docs/decisions.md, "A small
 * native module for the bytes every round touches"):
 *
 * - the AES-256-CTR keystream of the mask generator written into the caller's memory: the same
 *   bytes as node:crypto's aes-256-ctr, at 1.3× `openssl speed` with VAES (0.8× with AES-NI alone)
 *   where Node's `cipher.update` reaches about half, because it allocates and zero-fills a new
 *   output buffer on every call;
 * - CRC32C with SSE4.2 (about four times @node-rs/crc32 per CPU-second here);
 * - the finiteness of bf16 and f32 values read in place (the WebAssembly kernel copies them into
 *   its memory first);
 * - SHA-256 with the SHA extensions, and two states over the same bytes at once (sha256.ts);
 * - secure aggregation's quantiser in AVX-512, reading the values in place and folding a site's
 *   masks into each word before storing it where it goes (mask-workspace.ts);
 * - a site's delta, local − global, from the two models' bytes where they lie (kernels/wasm.ts).
 *
 * aggregation/ touches no file: common/native.ts finds and loads the module, and each process's
 * entry point (the CLI, the benchmarks, the test setup) hands it here once with
 * {@link useNativeKernels}, before any work. Until then, where it is missing, or where the CPU cannot
 * run a kernel (that function is then absent), callers use node:crypto, @node-rs/crc32 or the
 * WebAssembly kernels: the same results, more CPU. Each caller reads {@link nativeKernels} when it
 * makes its state (a keystream, a hash, a workspace), so a change applies to what is made after it.
 */
/** The register widths of the native keystream's loops: AES-NI alone, VAES with AVX2, VAES with AVX-512. */
export type KeystreamWidth = 128 | 256 | 512;

/** The quantiser's parameters, as the native kernels take them last: quantize.ts's QuantizeParams, and 32-bit words or 16. */
type QuantizerArgs = [clip: number, zero: number, scale: number, weight: number, wide: boolean];

/** The module's exports (native/module.c). */
export interface NativeKernels {
  /** Whether this CPU has AES-NI (and {@link aes256CtrInto} is there). */
  readonly aesni: boolean;
  /** Whether sixteen AES blocks are made at once in VAES's 256-bit registers. */
  readonly vaes: boolean;
  /** Whether thirty-two are, in VAES's 512-bit registers (AVX-512). */
  readonly vaes512: boolean;
  /**
   * Keystream bytes from byte `skip` of counter block hi·2^32 + lo (IV 0 ‖ block, big-endian),
   * filling `out`; `width` holds the loop to registers of at most that many bits (for tests: each
   * loop must make the same bytes).
   */
  readonly aes256CtrInto?: (key: Uint8Array, blockHi: number, blockLo: number, skip: number, out: Uint8Array, width?: KeystreamWidth) => void;
  /**
   * The masked words of Δ = local − global (each F32 or BF16 bytes) into `dst`, 32-bit where `wide`:
   * `keys` holds the rounding stream's 32-byte key and one per mask, `minus` a byte per mask
   * (nonzero: subtracted), every stream from word `wordOffset`. −1, or the index of the first NaN
   * or ±Infinity in Δ (aggregation/secagg/mask.ts, `maskDelta`).
   */
  readonly maskDelta?: (
    dst: Uint8Array,
    local: Uint8Array,
    localBf16: boolean,
    global: Uint8Array,
    globalBf16: boolean,
    keys: Uint8Array,
    minus: Uint8Array,
    wordOffset: number,
    ...quantizer: QuantizerArgs
  ) => number;
  /** CRC32C (Castagnoli) of `data`, as @node-rs/crc32's `crc32c(data)`. */
  readonly crc32c?: (data: Uint8Array) => number;
  /** Index of the first NaN or ±Infinity among little-endian bf16 values, or -1. */
  readonly findNonFiniteBf16?: (bytes: Uint8Array) => number;
  /** Index of the first NaN or ±Infinity among little-endian f32 values, or -1. */
  readonly findNonFiniteF32?: (bytes: Uint8Array) => number;
  /**
   * secure aggregation's quantiser (quantize.ts, `quantizeRange`), bit for bit, eight values a step
   * (AVX-512): x's f32 values and u's rounding words into u32 (`wide`) or u16 words, each word then
   * taking `count` (0 to 4) keystream words before it is stored — source j's `stride` bytes after
   * source j − 1's in `src`, subtracted where bit j of `negative` is set, modulo 2^b. 1 when x holds a
   * NaN or ±Infinity (dst then holds nothing reliable), else 0.
   */
  readonly quantizeF32?: (
    dst: Uint8Array,
    x: Uint8Array,
    u: Uint8Array,
    src: Uint8Array,
    stride: number,
    count: number,
    negative: number,
    ...quantizer: QuantizerArgs
  ) => number;
  /** dst's u32 (`wide`) or u16 words take `count` (1 to 4) keystream words each, as quantizeF32's do. */
  readonly foldWords?: (dst: Uint8Array, src: Uint8Array, stride: number, count: number, negative: number, wide: boolean) => void;
  /**
   * A site's delta (kernels/reference.ts, deltaToF32Ref and deltaToBf16Ref), bit for bit, sixteen
   * values a step (AVX-512): dst = local − global in f32, each source little-endian F32 or BF16
   * bytes (the flags) read in place, written as f32 or rounded to bf16; the lengths must agree.
   */
  readonly delta?: (dst: Uint8Array, local: Uint8Array, localBf16: boolean, global: Uint8Array, globalBf16: boolean, outBf16: boolean) => void;
  /** bf16 bytes widened to f32 bytes (dtype.ts's bf16ToF32), n values each, both views aligned to their values. */
  readonly bf16ToF32?: (dst: Uint8Array, src: Uint8Array) => void;
  /** f32 bytes narrowed to bf16 bytes, rounded to nearest even, a NaN kept quiet (dtype.ts's f32ToBf16). */
  readonly f32ToBf16?: (dst: Uint8Array, src: Uint8Array) => void;
  /** Index of the first finite f32 value whose magnitude's bits are at least `limit` (dtype.ts's narrowingOverflow), or −1. */
  readonly findNarrowingOverflow?: (src: Uint8Array, limit: number) => number;
  /**
   * One server step of the momentum rules in place over f32 bytes (server-optimizer.ts, bit for bit):
   * with `v`, heavy ball or (nesterov) DiLoCo's outer step; with null, FedAvg.
   */
  readonly momentumStep?: (theta: Uint8Array, delta: Uint8Array, v: Uint8Array | null, lr: number, mu: number, nesterov: boolean) => void;
  /** Bytes of a SHA-256 state (the SHA extensions' functions below are there with it). */
  readonly sha256StateBytes?: number;
  readonly sha256Init?: (state: Uint8Array) => void;
  readonly sha256Update?: (state: Uint8Array, data: Uint8Array) => void;
  /** Both states take `data`, their rounds interleaved. */
  readonly sha256Update2?: (a: Uint8Array, b: Uint8Array, data: Uint8Array) => void;
  readonly sha256Final?: (state: Uint8Array, out: Uint8Array) => void;
  /** `sha256Update(state, data)`, returning the CRC32C of `data` from the same pass (needs SSE4.2 too). */
  readonly sha256UpdateCrc32c?: (state: Uint8Array, data: Uint8Array) => number;
}

/** The bytes a typed array views, as the native kernels (and the WebAssembly ones) take them. */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** What common/native.ts's `loadNativeModule` returns. */
export interface LoadedNative {
  readonly module?: object;
  readonly why?: string;
}

/** The process's kernels and why there are none; set by {@link useNativeKernels}. */
let installed: { readonly kernels?: NativeKernels; readonly why?: string } = { why: 'this process has not loaded the native module' };

/**
 * Makes `loaded` the process's native kernels (or, with no module, records why there are none).
 * A module that does not say whether it has AES-NI is not this project's and is refused.
 */
export function useNativeKernels(loaded: LoadedNative): void {
  const m = loaded.module as Partial<NativeKernels> | undefined;
  if (m === undefined) installed = { why: loaded.why ?? 'no native module' };
  else if (typeof m.aesni !== 'boolean' || typeof m.vaes !== 'boolean' || typeof m.vaes512 !== 'boolean') {
    installed = { why: 'the loaded module is not native/module.c (no aesni, vaes and vaes512 flags)' };
  }
  else installed = { kernels: m as NativeKernels };
}

/** The native kernels, or undefined (see {@link nativeUnavailable}). */
export function nativeKernels(): NativeKernels | undefined {
  return installed.kernels;
}

/** Why there are no native kernels, or undefined when there are. */
export function nativeUnavailable(): string | undefined {
  return installed.why;
}

/** Why the mask keystream does not come from the native module, or undefined when it does. */
export function nativeKeystreamUnavailable(): string | undefined {
  return installed.why ?? (installed.kernels?.aes256CtrInto === undefined ? 'this CPU has no AES-NI' : undefined);
}
