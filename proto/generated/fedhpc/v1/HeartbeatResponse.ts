// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface HeartbeatResponse {
  'serverTimeMs'?: (number | string | Long);
}

export interface HeartbeatResponse__Output {
  'serverTimeMs': (string);
}
