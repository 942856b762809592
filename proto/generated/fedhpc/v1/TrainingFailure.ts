// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface TrainingFailure {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'code'?: (string);
  'message'?: (string);
  'retryable'?: (boolean);
}

export interface TrainingFailure__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'code': (string);
  'message': (string);
  'retryable': (boolean);
}
