// Original file: proto/fedhpc/v1/fedhpc.proto

import type { ModelRef as _fedhpc_v1_ModelRef, ModelRef__Output as _fedhpc_v1_ModelRef__Output } from '../../fedhpc/v1/ModelRef';
import type { Long } from '@grpc/proto-loader';

export interface FinishedTask {
  'runId'?: (string);
  'model'?: (_fedhpc_v1_ModelRef | null);
  'modelRound'?: (number | string | Long);
}

export interface FinishedTask__Output {
  'runId': (string);
  'model': (_fedhpc_v1_ModelRef__Output | null);
  'modelRound': (string);
}
