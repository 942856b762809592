// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface FoldedPart {
  'baseModelSha256'?: (string);
  'samples'?: (number | string | Long);
  'tokens'?: (number | string | Long);
  'steps'?: (number | string | Long);
}

export interface FoldedPart__Output {
  'baseModelSha256': (string);
  'samples': (string);
  'tokens': (string);
  'steps': (string);
}
