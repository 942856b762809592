// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ShardCancel {
  'round'?: (number | string | Long);
  'attempt'?: (number);
}

export interface ShardCancel__Output {
  'round': (string);
  'attempt': (number);
}
