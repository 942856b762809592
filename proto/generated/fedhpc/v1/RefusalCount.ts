// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface RefusalCount {
  'reason'?: (string);
  'count'?: (number | string | Long);
}

export interface RefusalCount__Output {
  'reason': (string);
  'count': (string);
}
