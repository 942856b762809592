// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface UploadQueued {
  'budgetBytes'?: (number | string | Long);
  'usedBytes'?: (number | string | Long);
  'waitingStreams'?: (number);
}

export interface UploadQueued__Output {
  'budgetBytes': (string);
  'usedBytes': (string);
  'waitingStreams': (number);
}
