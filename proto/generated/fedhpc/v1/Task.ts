// Original file: proto/fedhpc/v1/fedhpc.proto

import type { TrainTask as _fedhpc_v1_TrainTask, TrainTask__Output as _fedhpc_v1_TrainTask__Output } from '../../fedhpc/v1/TrainTask';
import type { EvalTask as _fedhpc_v1_EvalTask, EvalTask__Output as _fedhpc_v1_EvalTask__Output } from '../../fedhpc/v1/EvalTask';
import type { CancelTask as _fedhpc_v1_CancelTask, CancelTask__Output as _fedhpc_v1_CancelTask__Output } from '../../fedhpc/v1/CancelTask';

export interface Task {
  'train'?: (_fedhpc_v1_TrainTask | null);
  'eval'?: (_fedhpc_v1_EvalTask | null);
  'cancel'?: (_fedhpc_v1_CancelTask | null);
  'kind'?: "train"|"eval"|"cancel";
}

export interface Task__Output {
  'train'?: (_fedhpc_v1_TrainTask__Output | null);
  'eval'?: (_fedhpc_v1_EvalTask__Output | null);
  'cancel'?: (_fedhpc_v1_CancelTask__Output | null);
  'kind'?: "train"|"eval"|"cancel";
}
