// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ShardHello {
  'protocolVersion'?: (number);
  'shardId'?: (string);
  'term'?: (number | string | Long);
  'shardVersion'?: (string);
  'servesUploads'?: (boolean);
}

export interface ShardHello__Output {
  'protocolVersion': (number);
  'shardId': (string);
  'term': (string);
  'shardVersion': (string);
  'servesUploads': (boolean);
}
