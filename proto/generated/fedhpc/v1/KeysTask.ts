// Original file: proto/fedhpc/v1/fedhpc.proto

import type { SecAggParams as _fedhpc_v1_SecAggParams, SecAggParams__Output as _fedhpc_v1_SecAggParams__Output } from '../../fedhpc/v1/SecAggParams';
import type { Long } from '@grpc/proto-loader';

export interface KeysTask {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'params'?: (_fedhpc_v1_SecAggParams | null);
}

export interface KeysTask__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'params': (_fedhpc_v1_SecAggParams__Output | null);
}
