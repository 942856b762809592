// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ShardReceived {
  'term'?: (number | string | Long);
  'siteId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'start'?: (number | string | Long);
  'end'?: (number | string | Long);
  'sha256'?: (string);
  'refused'?: (string);
  'weightWord'?: (Buffer | Uint8Array | string);
}

export interface ShardReceived__Output {
  'term': (string);
  'siteId': (string);
  'round': (string);
  'attempt': (number);
  'start': (string);
  'end': (string);
  'sha256': (string);
  'refused': (string);
  'weightWord': (Buffer);
}
