// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface PhaseTiming {
  'phase'?: (string);
  'startedMs'?: (number | string | Long);
  'durationMs'?: (number | string | Long);
}

export interface PhaseTiming__Output {
  'phase': (string);
  'startedMs': (string);
  'durationMs': (string);
}
