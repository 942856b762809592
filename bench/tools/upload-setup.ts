/**
 * Shared set-up of the `transport` and `wan` benchmarks: a throw-away federation's certificates
 * (the coordinator's for the receivers, one per site for the senders), argument parsing, and the
 * sender options they all use.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_FLOW_CONTROL_WINDOW_BYTES } from '../../common/grpc-window.js';
import { readTlsFiles, type TlsFiles, type TlsMaterial } from '../../common/tls.js';
import { provisionFederation } from '../../coordinator/index.js';
import type { SendOptions } from './upload-send.js';

/** Largest chunk the wire allows (MAX_MESSAGE_BYTES leaves 64 KiB for framing around it). */
export const CHUNK_BYTES = 4 * 1024 * 1024;

/** In-flight budget of issue 4: unacknowledged upload bytes across all sites at most 256 MiB. */
export const IN_FLIGHT_BUDGET_BYTES = 256 * 1024 * 1024;

/**
 * Unacknowledged bytes the sink lets each of `sites` concurrent senders have in flight
 * (`UploadAccepted.window_bytes`): an equal share of the budget, at most the 64 MiB HTTP/2 window
 * (one site: 64 MiB; eight: 32 MiB, which still covers 1 GB/s at 30 ms).
 */
export function ackWindowBytes(sites: number): number {
  return Math.min(DEFAULT_FLOW_CONTROL_WINDOW_BYTES, Math.floor(IN_FLIGHT_BUDGET_BYTES / sites));
}

export const MiB = 1024 * 1024;

/** Certificates of a bench federation, removed by `cleanup`. */
export interface BenchPki {
  readonly coordinator: TlsMaterial;
  readonly sites: readonly TlsFiles[];
  cleanup(): Promise<void>;
}

/** Provisions a CA, the coordinator and `sites` sites in a temp folder. */
export async function provisionBenchPki(sites: number): Promise<BenchPki> {
  const dir = await mkdtemp(join(tmpdir(), 'fedhpc-bench-transport-'));
  const ids = Array.from({ length: sites }, (_, i) => `site-${i + 1}`);
  const manifest = await provisionFederation({ federation: 'benchfed', sites: ids, admins: [], outDir: dir });
  const c = manifest.coordinator;
  return {
    coordinator: readTlsFiles({ ca: c.caPath, cert: c.certPath, key: c.keyPath }),
    sites: manifest.sites.map((s) => ({ ca: s.caPath, cert: s.certPath, key: s.keyPath })),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Reads `--name N` (MiB or a count) from `args`; refuses anything but a positive integer. */
export function intArg(args: readonly string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const raw = args[i + 1];
  const value = Number(raw);
  if (raw === undefined || !Number.isInteger(value) || value <= 0) throw new Error(`--${name} needs a positive integer, got ${raw ?? 'nothing'}`);
  return value;
}

/** Reads `--name VALUE` from `args`: undefined when absent, refused when the value is missing. */
export function textArg(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const raw = args[i + 1];
  if (raw === undefined || raw.startsWith('--')) throw new Error(`--${name} needs a value`);
  return raw;
}

/** Options of one upload of `bytes` to `port` on loopback, with a deadline no healthy run reaches. */
export function sender(transport: SendOptions['transport'], port: number, tls: TlsFiles, bytes: number): SendOptions {
  // At least 1 MB/s, plus start-up slack: only a stuck transfer hits it.
  const deadlineMs = Math.ceil(bytes / 1e6) * 1000 + 60_000;
  return { transport, host: '127.0.0.1', port, tls, bytes, chunkBytes: CHUNK_BYTES, deadlineMs };
}

/** `12.3` style: one decimal for figures in MB/s, three for ratios. */
export const fixed = (x: number, digits = 1): number => Number(x.toFixed(digits));
