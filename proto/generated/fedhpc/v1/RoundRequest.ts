// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface RoundRequest {
  'round'?: (number | string | Long);
}

export interface RoundRequest__Output {
  'round': (string);
}
