// Original file: proto/fedhpc/v1/fedhpc.proto

import type { ModelRef as _fedhpc_v1_ModelRef, ModelRef__Output as _fedhpc_v1_ModelRef__Output } from '../../fedhpc/v1/ModelRef';
import type { Long } from '@grpc/proto-loader';

export interface EvalTask {
  'runId'?: (string);
  'model'?: (_fedhpc_v1_ModelRef | null);
  'modelRound'?: (number | string | Long);
  'deadlineMs'?: (number | string | Long);
}

export interface EvalTask__Output {
  'runId': (string);
  'model': (_fedhpc_v1_ModelRef__Output | null);
  'modelRound': (string);
  'deadlineMs': (string);
}
