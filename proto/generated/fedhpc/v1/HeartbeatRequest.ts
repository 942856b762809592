// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface HeartbeatRequest {
  'activity'?: (string);
  'round'?: (number | string | Long);
  'progress'?: (number | string);
  'trainLoss'?: (number | string);
}

export interface HeartbeatRequest__Output {
  'activity': (string);
  'round': (string);
  'progress': (number);
  'trainLoss': (number);
}
