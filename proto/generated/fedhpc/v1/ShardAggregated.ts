// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ShardAggregated {
  'term'?: (number | string | Long);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'ok'?: (boolean);
  'written'?: (number | string | Long)[];
  'code'?: (string);
  'message'?: (string);
}

export interface ShardAggregated__Output {
  'term': (string);
  'round': (string);
  'attempt': (number);
  'ok': (boolean);
  'written': (string)[];
  'code': (string);
  'message': (string);
}
