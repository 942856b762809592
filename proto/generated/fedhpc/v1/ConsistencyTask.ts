// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ConsistencyTask {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'survivors'?: (string)[];
  'dropped'?: (string)[];
}

export interface ConsistencyTask__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'survivors': (string)[];
  'dropped': (string)[];
}
