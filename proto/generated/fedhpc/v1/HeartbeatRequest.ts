// Original file: proto/fedhpc/v1/fedhpc.proto

import type { TransferProgress as _fedhpc_v1_TransferProgress, TransferProgress__Output as _fedhpc_v1_TransferProgress__Output } from '../../fedhpc/v1/TransferProgress';
import type { Long } from '@grpc/proto-loader';

export interface HeartbeatRequest {
  'activity'?: (string);
  'round'?: (number | string | Long);
  'progress'?: (number | string);
  'trainLoss'?: (number | string);
  'transfer'?: (_fedhpc_v1_TransferProgress | null);
}

export interface HeartbeatRequest__Output {
  'activity': (string);
  'round': (string);
  'progress': (number);
  'trainLoss': (number);
  'transfer': (_fedhpc_v1_TransferProgress__Output | null);
}
