// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface DeltaPartHash {
  'start'?: (number | string | Long);
  'end'?: (number | string | Long);
  'sha256'?: (string);
}

export interface DeltaPartHash__Output {
  'start': (string);
  'end': (string);
  'sha256': (string);
}
