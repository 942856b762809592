// Original file: proto/fedhpc/v1/fedhpc.proto

import type { ShardHello as _fedhpc_v1_ShardHello, ShardHello__Output as _fedhpc_v1_ShardHello__Output } from '../../fedhpc/v1/ShardHello';
import type { ShardReadiness as _fedhpc_v1_ShardReadiness, ShardReadiness__Output as _fedhpc_v1_ShardReadiness__Output } from '../../fedhpc/v1/ShardReadiness';
import type { ShardAggregated as _fedhpc_v1_ShardAggregated, ShardAggregated__Output as _fedhpc_v1_ShardAggregated__Output } from '../../fedhpc/v1/ShardAggregated';
import type { ShardReceived as _fedhpc_v1_ShardReceived, ShardReceived__Output as _fedhpc_v1_ShardReceived__Output } from '../../fedhpc/v1/ShardReceived';
import type { ShardSent as _fedhpc_v1_ShardSent, ShardSent__Output as _fedhpc_v1_ShardSent__Output } from '../../fedhpc/v1/ShardSent';

export interface ShardReport {
  'hello'?: (_fedhpc_v1_ShardHello | null);
  'readiness'?: (_fedhpc_v1_ShardReadiness | null);
  'aggregated'?: (_fedhpc_v1_ShardAggregated | null);
  'received'?: (_fedhpc_v1_ShardReceived | null);
  'sent'?: (_fedhpc_v1_ShardSent | null);
  'kind'?: "hello"|"readiness"|"aggregated"|"received"|"sent";
}

export interface ShardReport__Output {
  'hello'?: (_fedhpc_v1_ShardHello__Output | null);
  'readiness'?: (_fedhpc_v1_ShardReadiness__Output | null);
  'aggregated'?: (_fedhpc_v1_ShardAggregated__Output | null);
  'received'?: (_fedhpc_v1_ShardReceived__Output | null);
  'sent'?: (_fedhpc_v1_ShardSent__Output | null);
  'kind'?: "hello"|"readiness"|"aggregated"|"received"|"sent";
}
