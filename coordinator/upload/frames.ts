/**
 * An upload stream's messages as the upload service works on them, converted from the wire by
 * `coordinator/service/wire.ts` (64-bit counts are safe integers here): the header, then chunks,
 * tensor digests and the trailer.
 */

/** One tensor as an upload header declares it. */
export interface DeclaredTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
}

/** The first message of every upload stream: what the delta is and which stripe this stream carries. */
export interface UploadHeader {
  readonly runId: string;
  readonly round: number;
  readonly attempt: number;
  readonly baseModelSha256: string;
  /** The wire encoding's name; undefined when the sender named none. */
  readonly encoding: string | undefined;
  readonly tensors: readonly DeclaredTensor[];
  readonly totalBytes: number;
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
  readonly trainLoss: number;
  readonly dataManifestSha256: string;
  /** 0/0/0 declares one stripe: the whole delta. */
  readonly stripeOffset: number;
  readonly stripeBytes: number;
  readonly stripeCount: number;
  /** 0: the coordinator's maximum. */
  readonly chunkBytes: number;
  /** The part of the delta an aggregator shard takes (0/0: the whole delta, to the coordinator). */
  readonly partStart: number;
  readonly partEnd: number;
  /** First and last training step of the fresh work, ms on the site's clock (0/0: unknown). */
  readonly trainStartedMs: number;
  readonly trainFinishedMs: number;
  /** Earlier work folded into this delta, each part with its own base. */
  readonly folded: readonly DeclaredFoldedPart[];
  /**
   * Overlapped rounds: inner steps between the site's previous snapshot and the step that applied
   * this delta's base (0 when not overlapped; docs/protocol.md, "The persistent trainer").
   */
  readonly appliedStalenessSteps: number;
  /** Sum of the training steps' durations within the busy span, ms (0: unknown). */
  readonly busyMs: number;
  /**
   * Names the delta's bytes ('' unnamed): the same name in a later attempt of the round, with an
   * otherwise equal header, promises the same bytes (docs/protocol.md, "Reuse across attempts").
   */
  readonly contentId: string;
  /**
   * The stream offers one SHA-256 of all its bytes, in the trailer, instead of a digest per tensor
   * piece (version 14; docs/protocol.md, "Chunks, digests, acknowledgements"): a stream's own
   * choice, like its stripe and chunk size, so not part of what names the delta's bytes.
   */
  readonly wholeDigest: boolean;
}

/** A part of an upload trained from an older base (docs/protocol.md, "Bases, staleness and folded work"). */
export interface DeclaredFoldedPart {
  readonly baseModelSha256: string;
  readonly samples: number;
  readonly tokens: number;
  readonly steps: number;
}

/** One message of an upload stream. */
export type UploadFrame =
  | { readonly kind: 'header'; readonly header: UploadHeader }
  | { readonly kind: 'chunk'; readonly offset: number; readonly data: Buffer; readonly crc32c: number }
  | { readonly kind: 'digest'; readonly tensor: number; readonly sha256: string }
  | { readonly kind: 'trailer'; readonly sha256: string }
  | { readonly kind: 'empty' };
