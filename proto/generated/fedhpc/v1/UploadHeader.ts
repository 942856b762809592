// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Encoding as _fedhpc_v1_Encoding, Encoding__Output as _fedhpc_v1_Encoding__Output } from '../../fedhpc/v1/Encoding';
import type { TensorSpec as _fedhpc_v1_TensorSpec, TensorSpec__Output as _fedhpc_v1_TensorSpec__Output } from '../../fedhpc/v1/TensorSpec';
import type { FoldedPart as _fedhpc_v1_FoldedPart, FoldedPart__Output as _fedhpc_v1_FoldedPart__Output } from '../../fedhpc/v1/FoldedPart';
import type { Long } from '@grpc/proto-loader';

export interface UploadHeader {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'baseModelSha256'?: (string);
  'encoding'?: (_fedhpc_v1_Encoding | null);
  'tensors'?: (_fedhpc_v1_TensorSpec)[];
  'totalBytes'?: (number | string | Long);
  'samples'?: (number | string | Long);
  'tokens'?: (number | string | Long);
  'steps'?: (number | string | Long);
  'trainLoss'?: (number | string);
  'dataManifestSha256'?: (string);
  'stripeOffset'?: (number | string | Long);
  'stripeBytes'?: (number | string | Long);
  'stripeCount'?: (number);
  'chunkBytes'?: (number);
  'trainStartedMs'?: (number | string | Long);
  'trainFinishedMs'?: (number | string | Long);
  'folded'?: (_fedhpc_v1_FoldedPart)[];
  'appliedStalenessSteps'?: (number);
  'busyMs'?: (number | string | Long);
  'contentId'?: (string);
  'partStart'?: (number | string | Long);
  'partEnd'?: (number | string | Long);
  'wholeDigest'?: (boolean);
}

export interface UploadHeader__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'baseModelSha256': (string);
  'encoding': (_fedhpc_v1_Encoding__Output | null);
  'tensors': (_fedhpc_v1_TensorSpec__Output)[];
  'totalBytes': (string);
  'samples': (string);
  'tokens': (string);
  'steps': (string);
  'trainLoss': (number);
  'dataManifestSha256': (string);
  'stripeOffset': (string);
  'stripeBytes': (string);
  'stripeCount': (number);
  'chunkBytes': (number);
  'trainStartedMs': (string);
  'trainFinishedMs': (string);
  'folded': (_fedhpc_v1_FoldedPart__Output)[];
  'appliedStalenessSteps': (number);
  'busyMs': (string);
  'contentId': (string);
  'partStart': (string);
  'partEnd': (string);
  'wholeDigest': (boolean);
}
