// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ShardSent {
  'term'?: (number | string | Long);
  'siteId'?: (string);
  'sha256'?: (string);
  'start'?: (number | string | Long);
  'end'?: (number | string | Long);
  'bytes'?: (number | string | Long);
  'complete'?: (boolean);
}

export interface ShardSent__Output {
  'term': (string);
  'siteId': (string);
  'sha256': (string);
  'start': (string);
  'end': (string);
  'bytes': (string);
  'complete': (boolean);
}
