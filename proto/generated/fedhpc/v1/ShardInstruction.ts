// Original file: proto/fedhpc/v1/fedhpc.proto

import type { ShardAssignment as _fedhpc_v1_ShardAssignment, ShardAssignment__Output as _fedhpc_v1_ShardAssignment__Output } from '../../fedhpc/v1/ShardAssignment';
import type { ShardAggregate as _fedhpc_v1_ShardAggregate, ShardAggregate__Output as _fedhpc_v1_ShardAggregate__Output } from '../../fedhpc/v1/ShardAggregate';
import type { ShardCancel as _fedhpc_v1_ShardCancel, ShardCancel__Output as _fedhpc_v1_ShardCancel__Output } from '../../fedhpc/v1/ShardCancel';
import type { ShardAdmit as _fedhpc_v1_ShardAdmit, ShardAdmit__Output as _fedhpc_v1_ShardAdmit__Output } from '../../fedhpc/v1/ShardAdmit';
import type { ShardAdmitDownload as _fedhpc_v1_ShardAdmitDownload, ShardAdmitDownload__Output as _fedhpc_v1_ShardAdmitDownload__Output } from '../../fedhpc/v1/ShardAdmitDownload';
import type { ShardDrop as _fedhpc_v1_ShardDrop, ShardDrop__Output as _fedhpc_v1_ShardDrop__Output } from '../../fedhpc/v1/ShardDrop';
import type { Long } from '@grpc/proto-loader';

export interface ShardInstruction {
  'term'?: (number | string | Long);
  'assignment'?: (_fedhpc_v1_ShardAssignment | null);
  'aggregate'?: (_fedhpc_v1_ShardAggregate | null);
  'cancel'?: (_fedhpc_v1_ShardCancel | null);
  'admit'?: (_fedhpc_v1_ShardAdmit | null);
  'admitDownload'?: (_fedhpc_v1_ShardAdmitDownload | null);
  'drop'?: (_fedhpc_v1_ShardDrop | null);
  'kind'?: "assignment"|"aggregate"|"cancel"|"admit"|"admitDownload"|"drop";
}

export interface ShardInstruction__Output {
  'term': (string);
  'assignment'?: (_fedhpc_v1_ShardAssignment__Output | null);
  'aggregate'?: (_fedhpc_v1_ShardAggregate__Output | null);
  'cancel'?: (_fedhpc_v1_ShardCancel__Output | null);
  'admit'?: (_fedhpc_v1_ShardAdmit__Output | null);
  'admitDownload'?: (_fedhpc_v1_ShardAdmitDownload__Output | null);
  'drop'?: (_fedhpc_v1_ShardDrop__Output | null);
  'kind'?: "assignment"|"aggregate"|"cancel"|"admit"|"admitDownload"|"drop";
}
