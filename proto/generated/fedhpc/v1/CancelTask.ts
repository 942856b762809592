// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface CancelTask {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'reason'?: (string);
}

export interface CancelTask__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'reason': (string);
}
