// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ModelRef {
  'sha256'?: (string);
  'sizeBytes'?: (number | string | Long);
}

export interface ModelRef__Output {
  'sha256': (string);
  'sizeBytes': (string);
}
