/**
 * glibc allocator settings for fedhpc processes that generate masks or move large buffers.
 *
 * Node 20's `cipher.update` allocates a fresh output buffer on every call, and V8 frees those
 * buffers in batches after a garbage collection. With glibc's defaults, each batch of frees lets
 * `free()` return the top of the heap to the kernel (trim threshold 128 KiB) and buffers over the
 * mmap threshold are unmapped outright, so the next calls fault every page in again: measured on a
 * 2-vCPU EPYC, 256 KiB of AES-CTR keystream per call ran at 2.0–2.2 GB/s per CPU-second with
 * ~70% of the time in the kernel, and at 6.0 GB/s with these two settings (OpenSSL's own figure:
 * 8.7). gRPC's 4 MiB message buffers meet the same fate above the mmap threshold (measured: the
 * upload sender's CPU per GB fell from 2.2–4.3 s to 0.9–1.0 s with the threshold at 32 MiB, glibc's
 * maximum). Keeping up to 128 MiB of freed heap per process is the price.
 *
 * glibc reads these variables once, at the process's first allocation, so they must be in the
 * environment when the process starts: `bin/fedhpc` exports them, and fedhpc's own process
 * launchers (simulate, benchmarks) pass them with {@link withMallocTuning}. A value the operator
 * already set wins.
 */
export const MALLOC_TUNING: Readonly<Record<string, string>> = Object.freeze({
  MALLOC_MMAP_THRESHOLD_: String(32 << 20),
  MALLOC_TRIM_THRESHOLD_: String(128 << 20),
});

/** `env` plus {@link MALLOC_TUNING} for the variables it does not set already. */
export function withMallocTuning(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const [name, value] of Object.entries(MALLOC_TUNING)) out[name] ??= value;
  return out;
}
