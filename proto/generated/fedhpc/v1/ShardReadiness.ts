// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ShardReadiness {
  'term'?: (number | string | Long);
  'runId'?: (string);
  'globalModelSha256'?: (string);
  'ready'?: (boolean);
  'problem'?: (string);
  'freeBytes'?: (number | string | Long);
}

export interface ShardReadiness__Output {
  'term': (string);
  'runId': (string);
  'globalModelSha256': (string);
  'ready': (boolean);
  'problem': (string);
  'freeBytes': (string);
}
