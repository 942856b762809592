/**
 * A validated upload header (`UploadIntent`) for unit tests of the upload path: one plain f32 delta
 * of `elements` values in one tensor, one stripe, nothing folded, nothing named; `patch` sets the rest.
 */
import { deltaSegments } from '../../aggregation/index.js';
import type { UploadIntent } from '../../coordinator/upload/header.js';

export function uploadIntent(elements: number, patch: Partial<UploadIntent> = {}): UploadIntent {
  const totalBytes = elements * 4;
  return {
    round: 1,
    attempt: 1,
    totalBytes,
    weight: 1,
    samples: 1,
    tokens: 0,
    steps: 1,
    trainLoss: 0,
    dataManifestSha256: '',
    encoding: 'f32',
    segments: deltaSegments('f32', [elements]),
    part: { start: 0, end: totalBytes },
    stripe: { start: 0, end: totalBytes, count: 1 },
    chunkBytes: 1 << 20,
    baseModelSha256: 'a'.repeat(64),
    staleness: 0,
    folded: [],
    trainStartedMs: 0,
    trainFinishedMs: 0,
    appliedStaleness: 0,
    busyMs: 0,
    contentKey: undefined,
    ...patch,
  };
}
