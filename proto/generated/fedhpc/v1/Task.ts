// Original file: proto/fedhpc/v1/fedhpc.proto

import type { TrainTask as _fedhpc_v1_TrainTask, TrainTask__Output as _fedhpc_v1_TrainTask__Output } from '../../fedhpc/v1/TrainTask';
import type { EvalTask as _fedhpc_v1_EvalTask, EvalTask__Output as _fedhpc_v1_EvalTask__Output } from '../../fedhpc/v1/EvalTask';
import type { CancelTask as _fedhpc_v1_CancelTask, CancelTask__Output as _fedhpc_v1_CancelTask__Output } from '../../fedhpc/v1/CancelTask';
import type { KeysTask as _fedhpc_v1_KeysTask, KeysTask__Output as _fedhpc_v1_KeysTask__Output } from '../../fedhpc/v1/KeysTask';
import type { SharesTask as _fedhpc_v1_SharesTask, SharesTask__Output as _fedhpc_v1_SharesTask__Output } from '../../fedhpc/v1/SharesTask';
import type { ConsistencyTask as _fedhpc_v1_ConsistencyTask, ConsistencyTask__Output as _fedhpc_v1_ConsistencyTask__Output } from '../../fedhpc/v1/ConsistencyTask';
import type { UnmaskTask as _fedhpc_v1_UnmaskTask, UnmaskTask__Output as _fedhpc_v1_UnmaskTask__Output } from '../../fedhpc/v1/UnmaskTask';
import type { FinishedTask as _fedhpc_v1_FinishedTask, FinishedTask__Output as _fedhpc_v1_FinishedTask__Output } from '../../fedhpc/v1/FinishedTask';

export interface Task {
  'train'?: (_fedhpc_v1_TrainTask | null);
  'eval'?: (_fedhpc_v1_EvalTask | null);
  'cancel'?: (_fedhpc_v1_CancelTask | null);
  'keys'?: (_fedhpc_v1_KeysTask | null);
  'shares'?: (_fedhpc_v1_SharesTask | null);
  'consistency'?: (_fedhpc_v1_ConsistencyTask | null);
  'unmask'?: (_fedhpc_v1_UnmaskTask | null);
  'finished'?: (_fedhpc_v1_FinishedTask | null);
  'kind'?: "train"|"eval"|"cancel"|"keys"|"shares"|"consistency"|"unmask"|"finished";
}

export interface Task__Output {
  'train'?: (_fedhpc_v1_TrainTask__Output | null);
  'eval'?: (_fedhpc_v1_EvalTask__Output | null);
  'cancel'?: (_fedhpc_v1_CancelTask__Output | null);
  'keys'?: (_fedhpc_v1_KeysTask__Output | null);
  'shares'?: (_fedhpc_v1_SharesTask__Output | null);
  'consistency'?: (_fedhpc_v1_ConsistencyTask__Output | null);
  'unmask'?: (_fedhpc_v1_UnmaskTask__Output | null);
  'finished'?: (_fedhpc_v1_FinishedTask__Output | null);
  'kind'?: "train"|"eval"|"cancel"|"keys"|"shares"|"consistency"|"unmask"|"finished";
}
