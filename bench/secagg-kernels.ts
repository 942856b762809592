/**
 * The site's per-parameter secure-aggregation kernels on one core, for `bench secagg`: the mask
 * PRG (AES-256-CTR keystream as {@link forEachKeystreamChunk} hands it to {@link applyMask}, output
 * not copied), {@link expandMaskInto} (keystream copied into a caller's buffer), {@link applyMask}
 * and {@link quantize}; beside `openssl speed -evp aes-256-ctr` (16384-byte blocks) measured in the
 * same run, before and after ours, and averaged. Then the two whole paths, in CPU-seconds (median
 * of 5): `siteMaskCpuS`, a site's encoder over 10 M parameters in 1 MiB upload chunks (quantise +
 * weight + self mask + 7 pairwise masks, as site-agent/encode.ts calls it), and
 * `siteMaskDeltaCpuS`, the same encoder from the two models' BF16 bytes by the native masker, Δ
 * included, beside its baseline by slices of Δ (`siteMaskDeltaSlicesCpuS`, and their ratio), and
 * `coordinatorUnmaskCpuS`, the coordinator's unmask + dequantise of a 10 M-word sum in its 4 Mi
 * slices for 8 sites with one dropped (7 self masks and 7 dropped pairs, as
 * coordinator/secure/unmask.ts calls it; summing the spools is not counted).
 *
 * Each runs twice, with the native keystream (native/prg.c) and through node:crypto
 * (FEDHPC_NATIVE=off), so the keystream's source is compared in the same run.
 *
 * The kernels run in child processes, because the glibc allocator settings a fedhpc process starts
 * with (common/malloc.ts; `bin/fedhpc` and the launchers set them) decide whether every cipher
 * call page-faults its output buffer in: once with the settings agents run with, once without, so
 * the difference stays visible. Per core means per CPU-second on both sides: `openssl speed`
 * divides by its CPU time unless given `-elapsed`, the kernels by their process's user + system
 * time. Run this file directly to print one child's figures as JSON (`pipelines` as its argument:
 * the two paths').
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  applyMask,
  createKernels,
  expandMaskInto,
  forEachKeystreamChunk,
  maskDelta,
  maskDeltaAvailable,
  MaskWorkspace,
  pairwiseSign,
  nativeKeystreamUnavailable,
  useNativeKernels,
  PRG_CHUNK_BYTES,
  quantize,
  quantizeAndMask,
  unmaskDequantize,
  type DroppedPair,
  type MaskWords,
  type PairwiseMask,
} from '../aggregation/index.js';
import { MALLOC_TUNING, withMallocTuning } from '../common/malloc.js';
import { loadNativeModule } from '../common/native.js';

const exec = promisify(execFile);

/** Seconds each single-core kernel measurement runs. */
const KERNEL_SECONDS = 2;
/** Words per call: 1 MiB, the site agent's default upload chunk. */
const KERNEL_WORDS = 256 * 1024;

/** Bytes per second of a kernel. */
interface Throughput {
  /** Per second of the process's CPU time (user + system, all its threads): per core. */
  readonly cpu: number;
  /** Per second of wall time (lower when other processes share the core). */
  readonly wall: number;
}

interface KernelFigures {
  readonly prg: Throughput;
  readonly expandInto: Throughput;
  readonly applyMask: Throughput;
  readonly quantize: Throughput;
}

const nowS = (): number => Number(process.hrtime.bigint()) / 1e9;

/** Throughput of `fn` (which processes `bytes` each call), run for about `seconds` of wall time. */
function throughput(seconds: number, bytes: number, fn: (i: number) => void): Throughput {
  fn(0); // warm-up: compile, allocate
  let calls = 0;
  const c0 = process.cpuUsage();
  const t0 = nowS();
  let t = t0;
  while (t - t0 < seconds) {
    fn(++calls);
    t = nowS();
  }
  const c = process.cpuUsage(c0);
  return { cpu: (calls * bytes) / ((c.user + c.system) / 1e6), wall: (calls * bytes) / (t - t0) };
}

function measureKernels(): KernelFigures {
  const seed = new Uint8Array(randomBytes(32));
  const words = new Uint32Array(KERNEL_WORDS);
  // Consecutive word offsets, as a site walks its vector chunk by chunk.
  let sink = 0;
  const prg = throughput(KERNEL_SECONDS, words.byteLength, (i) =>
    forEachKeystreamChunk(seed, i * KERNEL_WORDS, KERNEL_WORDS, 32, (bytes) => {
      sink ^= bytes[bytes.length - 1]!;
    }),
  );
  if (sink === -1) throw new Error('unreachable: keeps the keystream observable');
  const expandInto = throughput(KERNEL_SECONDS, words.byteLength, (i) => expandMaskInto(words, seed, i * KERNEL_WORDS));
  const apply = throughput(KERNEL_SECONDS, words.byteLength, (i) => applyMask(words, seed, i * KERNEL_WORDS, 1));
  const x = new Float32Array(KERNEL_WORDS);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i) * 1e-3;
  const q = { clip: 1, quantBits: 24, modulusBits: 32 as const };
  const quant = throughput(KERNEL_SECONDS, x.byteLength, (i) => void quantize(x, q, { weight: 0.5, roundingSeed: seed, wordOffset: i * KERNEL_WORDS }));
  return { prg, expandInto, applyMask: apply, quantize: quant };
}

/** Where a child's keystream comes from: native/prg.c, or node:crypto (FEDHPC_NATIVE=off). */
type KeystreamSource = 'native' | 'node:crypto';

/** A child's environment: the allocator settings or none, and the keystream's source. */
function childEnv(tuned: boolean, source: KeystreamSource): NodeJS.ProcessEnv {
  const env = tuned ? withMallocTuning(process.env) : { ...process.env };
  if (!tuned) for (const name of Object.keys(MALLOC_TUNING)) delete env[name];
  if (source === 'node:crypto') env['FEDHPC_NATIVE'] = 'off';
  else delete env['FEDHPC_NATIVE'];
  return env;
}

/** One child process's kernel figures, with or without the allocator settings. */
async function kernelsInChild(tuned: boolean, source: KeystreamSource): Promise<KernelFigures> {
  const { stdout } = await exec(process.execPath, [fileURLToPath(import.meta.url)], { env: childEnv(tuned, source), timeout: 120_000 });
  return JSON.parse(stdout) as KernelFigures;
}

/** The encoder and unmasker pipelines in a child process started as agents are. */
async function pipelinesInChild(source: KeystreamSource): Promise<PipelineFigures> {
  const { stdout } = await exec(process.execPath, [fileURLToPath(import.meta.url), 'pipelines'], { env: childEnv(true, source), timeout: 300_000, maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as PipelineFigures;
}

/**
 * OpenSSL's single-core AES-256-CTR speed over 16384-byte blocks, in GB/s. By default `openssl
 * speed` divides by the CPU (user) time it used; `elapsed` divides by wall time instead.
 */
async function opensslAesCtr(elapsed: boolean): Promise<number> {
  const args = ['speed', ...(elapsed ? ['-elapsed'] : []), '-evp', 'aes-256-ctr', '-seconds', String(KERNEL_SECONDS), '-bytes', '16384'];
  const { stdout } = await exec('openssl', args, { timeout: 60_000 });
  const lines = stdout.split('\n');
  const header = lines.find((l) => /^type\s/.test(l));
  const row = lines.find((l) => /^aes-256-ctr\s/i.test(l));
  if (!header || !row) throw new Error(`secagg: cannot read openssl speed output:\n${stdout}`);
  // "type  16384 bytes" / "AES-256-CTR  8866130.37k": columns after the first, in 1000s of bytes/s.
  const sizes = [...header.matchAll(/(\d+) bytes/g)].map((m) => Number(m[1]));
  const values = row.trim().split(/\s+/).slice(1);
  const at = sizes.indexOf(16384);
  const text = values[at];
  if (at < 0 || text === undefined || !/^[\d.]+k$/.test(text)) throw new Error(`secagg: no 16384-byte column in openssl speed output:\n${stdout}`);
  return (Number(text.slice(0, -1)) * 1000) / 1e9;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

// ------------------------------------------------------------------ the whole encoder and unmasker

/** Parameters masked by one site, sites in the federation (one dropped at the coordinator). */
const PIPELINE_PARAMS = 10_000_000;
const PIPELINE_SITES = 8;
/** Repetitions of each pipeline measurement; the median is reported. */
const PIPELINE_REPEATS = 5;
/** The coordinator's default slice (`limits.sliceElements`). */
const COORDINATOR_SLICE = 4 * 1024 * 1024;

/** CPU-seconds (user + system, all threads) of each pipeline, median of {@link PIPELINE_REPEATS}. */
interface PipelineFigures {
  readonly siteMaskCpuS: number;
  readonly coordinatorUnmaskCpuS: number;
  readonly siteMaskRunsS: readonly number[];
  readonly coordinatorUnmaskRunsS: readonly number[];
  /**
   * The encoder from the two models' BF16 bytes (Δ included): by the native masker (`maskDelta`),
   * and by slices of Δ, the encoder's path where the masker is missing; absent where the process
   * has no masker.
   */
  readonly fromBytes?: { readonly maskerCpuS: number; readonly slicesCpuS: number; readonly maskerRunsS: readonly number[]; readonly slicesRunsS: readonly number[] };
}

const cpuSecondsOf = (fn: () => void): number => {
  const c0 = process.cpuUsage();
  fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
};
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * What a site's masked encoder does for one upload chunk (site-agent/encode.ts, `maskedWords`):
 * quantise with the weight, add the self mask and one pairwise mask per neighbour, fused.
 */
function siteMaskChunk(x: Float32Array, wordOffset: number, m: { selfSeed: Uint8Array; pairwise: PairwiseMask[]; roundingSeed: Uint8Array; workspace: MaskWorkspace }): MaskWords {
  const q = { clip: 1, quantBits: 24, modulusBits: 32 as const };
  return quantizeAndMask(x, q, { weight: 0.5, roundingSeed: m.roundingSeed, selfSeed: m.selfSeed, pairwise: m.pairwise, wordOffset }, m.workspace);
}

/** What the coordinator does with one slice of the sum of masked spools (coordinator/secure/unmask.ts). */
function coordinatorUnmaskSlice(sum: Uint32Array, wordOffset: number, o: { selfSeeds: Uint8Array[]; droppedPairs: DroppedPair[]; workspace: MaskWorkspace; decoded: Float64Array }): Float32Array | Float64Array {
  const q = { clip: 1, quantBits: 24, modulusBits: 32 as const };
  return unmaskDequantize(sum, PIPELINE_SITES - 1, q, { survivorSelfSeeds: o.selfSeeds, droppedPairs: o.droppedPairs, wordOffset }, o.workspace, o.decoded.subarray(0, sum.length));
}

/**
 * The site's encoder over {@link PIPELINE_PARAMS} parameters in upload chunks of
 * {@link KERNEL_WORDS} words (self mask + 7 pairwise masks), and the coordinator's unmask +
 * dequantise of the same number of words in its slices (7 survivors' self masks, the dropped
 * site's 7 pairwise masks), each timed {@link PIPELINE_REPEATS} times.
 */
function measurePipelines(): PipelineFigures {
  const seed = (): Uint8Array => new Uint8Array(randomBytes(32));
  const sites = Array.from({ length: PIPELINE_SITES }, (_, i) => `site-${i + 1}`);
  const pairwise: PairwiseMask[] = sites.slice(1).map((peer) => ({ peer, seed: seed(), sign: pairwiseSign('site-1', peer) }));
  const site = { selfSeed: seed(), pairwise, roundingSeed: seed(), workspace: new MaskWorkspace() };
  const x = new Float32Array(PIPELINE_PARAMS);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i) * 1e-3;
  const dropped = sites[PIPELINE_SITES - 1]!;
  const unmask = {
    selfSeeds: sites.slice(0, -1).map(() => seed()),
    droppedPairs: sites.slice(0, -1).map((survivor): DroppedPair => ({ survivor, dropped, seed: seed() })),
    workspace: new MaskWorkspace(),
    decoded: new Float64Array(COORDINATOR_SLICE),
  };
  const sum = new Uint32Array(PIPELINE_PARAMS);
  for (let i = 0; i < sum.length; i++) sum[i] = (i * 2654435761) >>> 0;
  let sink = 0;
  const siteOnce = (): void => {
    for (let at = 0; at < x.length; at += KERNEL_WORDS) sink ^= siteMaskChunk(x.subarray(at, Math.min(x.length, at + KERNEL_WORDS)), at, site)[0]!;
  };
  const coordinatorOnce = (slices: Uint32Array[]): void => {
    for (let i = 0, at = 0; i < slices.length; at += slices[i]!.length, i++) sink += coordinatorUnmaskSlice(slices[i]!, at, unmask)[0]!;
  };
  siteOnce(); // warm-up: compile, allocate
  const siteMaskRunsS = Array.from({ length: PIPELINE_REPEATS }, () => cpuSecondsOf(siteOnce));
  const slicesOf = (): Uint32Array[] => Array.from({ length: Math.ceil(sum.length / COORDINATOR_SLICE) }, (_, i) => sum.slice(i * COORDINATOR_SLICE, (i + 1) * COORDINATOR_SLICE));
  coordinatorOnce(slicesOf());
  const coordinatorUnmaskRunsS = Array.from({ length: PIPELINE_REPEATS }, () => {
    // The spool reader hands each slice over as a fresh array, as here; making it is not timed.
    const slices = slicesOf();
    return cpuSecondsOf(() => coordinatorOnce(slices));
  });
  if (Number.isNaN(sink)) throw new Error('unreachable: keeps the outputs observable');
  return { siteMaskCpuS: median(siteMaskRunsS), coordinatorUnmaskCpuS: median(coordinatorUnmaskRunsS), siteMaskRunsS, coordinatorUnmaskRunsS, ...(maskDeltaAvailable() ? { fromBytes: measureFromBytes(x, site) } : {}) };
}

/** Values per slice of Δ where the encoder has no native masker (site-agent/encode.ts, VALUE_SLICE). */
const DELTA_SLICE = 128 * 1024;

/**
 * The site's encoder from the two models' BF16 bytes in 1 MiB chunks: the native masker (Δ made
 * block by block in L1), against its baseline, the encoder's path where the masker is missing (Δ
 * into a reused f32 slice, {@link quantizeAndMask} over each slice); both make the same words,
 * which are compared once.
 */
function measureFromBytes(x: Float32Array, m: { selfSeed: Uint8Array; pairwise: PairwiseMask[]; roundingSeed: Uint8Array; workspace: MaskWorkspace }): NonNullable<PipelineFigures['fromBytes']> {
  const bf16 = (v: (i: number) => number): Uint8Array => {
    const f = new Float32Array(x.length);
    for (let i = 0; i < f.length; i++) f[i] = v(i);
    const words = new Uint32Array(f.buffer);
    return new Uint8Array(Uint16Array.from(words, (w) => w >>> 16).buffer);
  };
  const global = bf16((i) => Math.sin(i * 0.37) * 0.05);
  const local = bf16((i) => Math.sin(i * 0.37) * 0.05 + x[i]!);
  const q = { clip: 1, quantBits: 24, modulusBits: 32 as const };
  const input = (wordOffset: number) => ({ weight: 0.5, roundingSeed: m.roundingSeed, selfSeed: m.selfSeed, pairwise: m.pairwise, wordOffset });
  const kernels = createKernels();
  const scratch = new Float32Array(DELTA_SLICE);
  const out = new Uint32Array(KERNEL_WORDS);
  const masker = (): Uint32Array => {
    for (let at = 0; at < x.length; at += KERNEL_WORDS) {
      const n = Math.min(KERNEL_WORDS, x.length - at);
      maskDelta({ local: local.subarray(2 * at, 2 * (at + n)), localBf16: true, global: global.subarray(2 * at, 2 * (at + n)), globalBf16: true }, q, input(at), out.subarray(0, n));
    }
    return out;
  };
  const slices = (): Uint32Array => {
    for (let at = 0; at < x.length; at += KERNEL_WORDS) {
      const n = Math.min(KERNEL_WORDS, x.length - at);
      for (let from = 0; from < n; from += DELTA_SLICE) {
        const k = Math.min(DELTA_SLICE, n - from);
        const [a, b] = [2 * (at + from), 2 * (at + from + k)];
        kernels.deltaToF32(scratch.subarray(0, k), local.subarray(a, b), 'BF16', global.subarray(a, b), 'BF16');
        quantizeAndMask(scratch.subarray(0, k), q, input(at + from), m.workspace, out.subarray(from, from + k));
      }
    }
    return out;
  };
  const lastChunk = (f: () => Uint32Array): Buffer => Buffer.from(f().slice());
  if (!lastChunk(masker).equals(lastChunk(slices))) throw new Error('secagg: the native masker and the slices of Δ made different words');
  const maskerRunsS = Array.from({ length: PIPELINE_REPEATS }, () => cpuSecondsOf(() => void masker()));
  const slicesRunsS = Array.from({ length: PIPELINE_REPEATS }, () => cpuSecondsOf(() => void slices()));
  return { maskerCpuS: median(maskerRunsS), slicesCpuS: median(slicesRunsS), maskerRunsS, slicesRunsS };
}

/** Measures the kernels and OpenSSL, logs them, and returns the figures for the JSON report. */
export async function secaggKernelFigures(log: (line: string) => void): Promise<Record<string, number>> {
  // OpenSSL before and after the tuned kernels, averaged, so drifting load weighs on both alike.
  const why = nativeKeystreamUnavailable();
  if (why !== undefined) log(`the native keystream is unavailable (${why}): both runs use node:crypto`);
  const opensslBefore = await opensslAesCtr(false);
  const k = await kernelsInChild(true, 'native');
  const opensslAfter = await opensslAesCtr(false);
  const viaNodeCrypto = await kernelsInChild(true, 'node:crypto');
  const untuned = await kernelsInChild(false, 'node:crypto');
  const opensslElapsed = await opensslAesCtr(true);
  const openssl = (opensslBefore + opensslAfter) / 2;
  const ratio = k.prg.cpu / 1e9 / openssl;
  const gb = (x: number): string => (x / 1e9).toFixed(2);
  log(`mask PRG (AES-256-CTR keystream, ${PRG_CHUNK_BYTES / 1024} KiB per call, 1 core): ${gb(k.prg.cpu)} GB/s per CPU-second (${gb(k.prg.wall)} GB/s wall)`);
  log(`  through node:crypto's cipher.update (a new output buffer per call): ${gb(viaNodeCrypto.prg.cpu)} GB/s; the same without the allocator settings: ${gb(untuned.prg.cpu)} GB/s (every output buffer page-faulted in again)`);
  log(`openssl speed -evp aes-256-ctr (16384 B blocks): ${openssl.toFixed(2)} GB/s per CPU-second (${opensslBefore.toFixed(2)} before, ${opensslAfter.toFixed(2)} after; -elapsed: ${opensslElapsed.toFixed(2)} GB/s wall)`);
  log(`  PRG / OpenSSL = ${(ratio * 100).toFixed(0)}% (target ≥ 50%)${ratio >= 0.5 ? '' : '  BELOW TARGET'}; wall-clock ratio ${((k.prg.wall / 1e9 / opensslElapsed) * 100).toFixed(0)}%`);
  log(`expandMaskInto (keystream copied into a reused ${KERNEL_WORDS * 4} B buffer): ${gb(k.expandInto.cpu)} GB/s`);
  log(`applyMask (keystream + add, in place): ${gb(k.applyMask.cpu)} GB/s; quantize (f32 in, with its rounding PRG): ${gb(k.quantize.cpu)} GB/s (per CPU-second)`);
  const p = await pipelinesInChild('native');
  const q = await pipelinesInChild('node:crypto');
  const runs = (xs: readonly number[]): string => xs.map((x) => x.toFixed(3)).join(', ');
  log(`site mask encoder (${PIPELINE_PARAMS / 1e6} M parameters, self + ${PIPELINE_SITES - 1} pairwise masks): ${p.siteMaskCpuS.toFixed(3)} CPU-s, median of ${runs(p.siteMaskRunsS)} (target ≤ 0.20); through node:crypto ${q.siteMaskCpuS.toFixed(3)} (${runs(q.siteMaskRunsS)})`);
  if (p.fromBytes) {
    const b = p.fromBytes;
    log(`site encoder from the models' BF16 bytes, Δ included: native masker ${b.maskerCpuS.toFixed(3)} CPU-s (${runs(b.maskerRunsS)}), by slices of Δ ${b.slicesCpuS.toFixed(3)} (${runs(b.slicesRunsS)}); ratio ${(b.maskerCpuS / b.slicesCpuS).toFixed(2)}`);
  } else log('site encoder from the models\' bytes: no native masker in this process (AVX-512 and AES-NI), not measured');
  log(`coordinator unmask + dequantise (${PIPELINE_SITES} sites, one dropped): ${p.coordinatorUnmaskCpuS.toFixed(3)} CPU-s, median of ${runs(p.coordinatorUnmaskRunsS)} (target ≤ 0.15); through node:crypto ${q.coordinatorUnmaskCpuS.toFixed(3)} (${runs(q.coordinatorUnmaskRunsS)})`);
  return {
    siteMaskCpuS: round3(p.siteMaskCpuS),
    coordinatorUnmaskCpuS: round3(p.coordinatorUnmaskCpuS),
    siteMaskNodeCryptoCpuS: round3(q.siteMaskCpuS),
    ...(p.fromBytes
      ? { siteMaskDeltaCpuS: round3(p.fromBytes.maskerCpuS), siteMaskDeltaSlicesCpuS: round3(p.fromBytes.slicesCpuS), siteMaskDeltaOverSlices: round3(p.fromBytes.maskerCpuS / p.fromBytes.slicesCpuS) }
      : {}),
    coordinatorUnmaskNodeCryptoCpuS: round3(q.coordinatorUnmaskCpuS),
    prgGBs: round3(k.prg.cpu / 1e9),
    prgNodeCryptoGBs: round3(viaNodeCrypto.prg.cpu / 1e9),
    opensslGBs: round3(openssl),
    prgOverOpenssl: round3(ratio),
    prgUntunedGBs: round3(untuned.prg.cpu / 1e9),
    prgWallGBs: round3(k.prg.wall / 1e9),
    opensslElapsedGBs: round3(opensslElapsed),
    expandIntoGBs: round3(k.expandInto.cpu / 1e9),
    applyMaskGBs: round3(k.applyMask.cpu / 1e9),
    quantizeGBs: round3(k.quantize.cpu / 1e9),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  useNativeKernels(loadNativeModule());
  process.stdout.write(`${JSON.stringify(process.argv[2] === 'pipelines' ? measurePipelines() : measureKernels())}\n`);
}
