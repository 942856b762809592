// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface StagedTensor {
  'byteOffset'?: (number | string | Long);
  'dtype'?: (string);
}

export interface StagedTensor__Output {
  'byteOffset': (string);
  'dtype': (string);
}
