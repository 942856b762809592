// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ShardAssignment {
  'runId'?: (string);
  'globalModelSha256'?: (string);
  'shardIndex'?: (number);
  'shardCount'?: (number);
  'alignValues'?: (number);
  'firstValue'?: (number | string | Long);
  'endValue'?: (number | string | Long);
  'totalValues'?: (number | string | Long);
}

export interface ShardAssignment__Output {
  'runId': (string);
  'globalModelSha256': (string);
  'shardIndex': (number);
  'shardCount': (number);
  'alignValues': (number);
  'firstValue': (string);
  'endValue': (string);
  'totalValues': (string);
}
