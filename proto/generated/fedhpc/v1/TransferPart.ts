// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface TransferPart {
  'shard'?: (string);
  'endpoint'?: (string);
  'start'?: (number | string | Long);
  'end'?: (number | string | Long);
}

export interface TransferPart__Output {
  'shard': (string);
  'endpoint': (string);
  'start': (string);
  'end': (string);
}
