/**
 * SHA-256 as the byte path uses it: the native module's SHA-extension code where it is built
 * (aggregation/native.ts), else node:crypto. The same digests either way; what the native one adds
 * is {@link Sha256.updateBoth}, two states fed the same bytes with their rounds interleaved — the
 * coordinator's piece digest and whole-delta digest of each received chunk, at about 0.8× the CPU
 * of two passes (docs/decisions.md, "A small native module for the bytes every round touches") —
 * and {@link Sha256.updateCrc32c}, a chunk's CRC32C from the pass that hashes it.
 */
import { Buffer } from 'node:buffer';
import { type Hash, createHash } from 'node:crypto';
import { AggregationError } from './errors.js';
import { nativeKernels } from './native.js';

/** The native module's SHA-256 functions (native/sha256.c). */
interface NativeSha {
  readonly bytes: number;
  readonly init: (state: Uint8Array) => void;
  readonly update: (state: Uint8Array, data: Uint8Array) => void;
  readonly update2: (a: Uint8Array, b: Uint8Array, data: Uint8Array) => void;
  readonly final: (state: Uint8Array, out: Uint8Array) => void;
  /** `update`, returning the CRC32C of the same bytes from the same pass (where SSE4.2 is there too). */
  readonly updateCrc?: ((state: Uint8Array, data: Uint8Array) => number) | undefined;
}

/** The native module's SHA-256 functions, all or none. */
function nativeSha(): NativeSha | undefined {
  const k = nativeKernels();
  return k?.sha256StateBytes !== undefined && k.sha256Init && k.sha256Update && k.sha256Update2 && k.sha256Final
    ? { bytes: k.sha256StateBytes, init: k.sha256Init, update: k.sha256Update, update2: k.sha256Update2, final: k.sha256Final, updateCrc: k.sha256UpdateCrc32c }
    : undefined;
}

/** A running SHA-256. */
export class Sha256 {
  /** The native state, or the node:crypto hash where the native module is not built. */
  private readonly state: { readonly kind: 'native'; readonly bytes: Uint8Array; readonly sha: NativeSha } | { readonly kind: 'node'; readonly hash: Hash };
  private finished = false;

  /** A new hash; given `from`, one holding what `from` holds, to be fed on its own (see {@link copy}). */
  constructor(from?: Sha256) {
    if (from !== undefined) {
      from.checkOpen();
      const f = from.state;
      this.state = f.kind === 'native' ? { ...f, bytes: f.bytes.slice() } : { kind: 'node', hash: f.hash.copy() };
      return;
    }
    const sha = nativeSha();
    if (sha === undefined) {
      this.state = { kind: 'node', hash: createHash('sha256') };
      return;
    }
    // A fresh ArrayBuffer of this size lives outside V8's heap, 16-aligned, as the C struct needs.
    const bytes = new Uint8Array(sha.bytes);
    sha.init(bytes);
    this.state = { kind: 'native', bytes, sha };
  }

  /** Feeds `data`; returns this. */
  update(data: Uint8Array): this {
    this.checkOpen();
    if (this.state.kind === 'native') this.state.sha.update(this.state.bytes, data);
    else this.state.hash.update(data);
    return this;
  }

  /**
   * Feeds `data` and returns its CRC32C: computed in the same pass where the native module has it
   * (the CRC's chain runs in the shadow of the rounds' latency), else by `crc32c` after the update.
   */
  updateCrc32c(data: Uint8Array, crc32c: (data: Uint8Array) => number): number {
    this.checkOpen();
    if (this.state.kind === 'native' && this.state.sha.updateCrc) return this.state.sha.updateCrc(this.state.bytes, data);
    this.update(data);
    return crc32c(data);
  }

  /** A new hash holding what this one holds, to be fed on its own (as node:crypto's `copy`). */
  copy(): Sha256 {
    return new Sha256(this);
  }

  /** The digest in lower-case hex; the hash takes nothing after it (as node:crypto's). */
  digest(encoding: 'hex'): string {
    this.checkOpen();
    this.finished = true;
    if (this.state.kind === 'node') return this.state.hash.digest(encoding);
    const out = new Uint8Array(32);
    this.state.sha.final(this.state.bytes, out);
    return Buffer.from(out.buffer).toString('hex');
  }

  /** `a.update(data); b.update(data)`, in one pass where the native module is built. */
  static updateBoth(a: Sha256, b: Sha256, data: Uint8Array): void {
    if (a === b) throw new AggregationError('INVALID_ARGUMENT', 'updateBoth needs two distinct hashes');
    a.checkOpen();
    b.checkOpen();
    if (a.state.kind === 'native' && b.state.kind === 'native') a.state.sha.update2(a.state.bytes, b.state.bytes, data);
    else {
      a.update(data);
      b.update(data);
    }
  }

  private checkOpen(): void {
    if (this.finished) throw new AggregationError('INVALID_ARGUMENT', 'this SHA-256 has given its digest and takes no more bytes');
  }
}
