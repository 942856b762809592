// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface HaStandby {
  'name'?: (string);
  'address'?: (string);
  'lastSeenMsAgo'?: (number | string | Long);
}

export interface HaStandby__Output {
  'name': (string);
  'address': (string);
  'lastSeenMsAgo': (string);
}
