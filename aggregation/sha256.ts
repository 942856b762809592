/**
 * SHA-256 as the byte path uses it: the native module's SHA-extension code where it is built
 * (aggregation/native.ts), else node:crypto. The same digests either way; what the native one adds
 * is {@link Sha256.updateBoth}, two states fed the same bytes with their rounds interleaved — the
 * coordinator's piece digest and whole-delta digest of each received chunk, at about 0.8× the CPU
 * of two passes (docs/decisions.md, "The mask keystream is written by a small native module").
 */
import { type Hash, createHash } from 'node:crypto';
import { Buffer } from 'node:buffer';
import { native } from './native.js';

/** A running SHA-256. */
export class Sha256 {
  /** The native state, or undefined where node:crypto hashes. */
  private readonly state: Uint8Array | undefined;
  private readonly hash: Hash | undefined;

  constructor() {
    if (native?.sha256Init !== undefined) {
      // A fresh ArrayBuffer is 8-aligned, as the C struct needs.
      this.state = new Uint8Array(native.sha256StateBytes!);
      native.sha256Init(this.state);
    } else {
      this.hash = createHash('sha256');
    }
  }

  /** Feeds `data`; returns this. */
  update(data: Uint8Array): this {
    if (this.state !== undefined) native!.sha256Update!(this.state, data);
    else this.hash!.update(data);
    return this;
  }

  /** The digest in lower-case hex; the hash takes no more bytes after it. */
  digest(encoding: 'hex'): string {
    if (this.state === undefined) return this.hash!.digest(encoding);
    const out = new Uint8Array(32);
    native!.sha256Final!(this.state, out);
    return Buffer.from(out.buffer).toString('hex');
  }

  /** `a.update(data); b.update(data)`, in one pass where the native module is built. */
  static updateBoth(a: Sha256, b: Sha256, data: Uint8Array): void {
    if (a === b) throw new RangeError('updateBoth needs two distinct hashes');
    if (a.state !== undefined && b.state !== undefined) native!.sha256Update2!(a.state, b.state, data);
    else {
      a.update(data);
      b.update(data);
    }
  }
}
