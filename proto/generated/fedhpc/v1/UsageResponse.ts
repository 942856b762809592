// Original file: proto/fedhpc/v1/fedhpc.proto

import type { UsageRow as _fedhpc_v1_UsageRow, UsageRow__Output as _fedhpc_v1_UsageRow__Output } from '../../fedhpc/v1/UsageRow';

export interface UsageResponse {
  'rows'?: (_fedhpc_v1_UsageRow)[];
}

export interface UsageResponse__Output {
  'rows': (_fedhpc_v1_UsageRow__Output)[];
}
