/**
 * An `UploadHeader` as the wire decodes it, for unit tests of header checks: `fields` names the
 * upload, everything else is what a sender that sets nothing else sends — one stripe, the whole
 * delta, no busy span, nothing folded, unnamed.
 */
import type { UploadHeader__Output } from '../../proto/index.js';

type Named = Pick<UploadHeader__Output, 'runId' | 'round' | 'attempt' | 'baseModelSha256' | 'encoding' | 'tensors' | 'totalBytes' | 'samples' | 'tokens' | 'steps' | 'trainLoss' | 'dataManifestSha256'>;

export function wireHeader(fields: Named, patch: Partial<UploadHeader__Output> = {}): UploadHeader__Output {
  return {
    ...fields,
    stripeOffset: '0',
    stripeBytes: '0',
    stripeCount: 0,
    chunkBytes: 0,
    trainStartedMs: '0',
    trainFinishedMs: '0',
    folded: [],
    appliedStalenessSteps: 0,
    busyMs: '0',
    contentId: '',
    wholeDigest: false,
    partStart: '0',
    partEnd: '0',
    ...patch,
  };
}
