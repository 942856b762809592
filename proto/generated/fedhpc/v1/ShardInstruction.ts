// Original file: proto/fedhpc/v1/fedhpc.proto

import type { ShardAssignment as _fedhpc_v1_ShardAssignment, ShardAssignment__Output as _fedhpc_v1_ShardAssignment__Output } from '../../fedhpc/v1/ShardAssignment';
import type { Long } from '@grpc/proto-loader';

export interface ShardInstruction {
  'term'?: (number | string | Long);
  'assignment'?: (_fedhpc_v1_ShardAssignment | null);
  'kind'?: "assignment";
}

export interface ShardInstruction__Output {
  'term': (string);
  'assignment'?: (_fedhpc_v1_ShardAssignment__Output | null);
  'kind'?: "assignment";
}
