// Original file: proto/fedhpc/v1/fedhpc.proto

import type { HaStandby as _fedhpc_v1_HaStandby, HaStandby__Output as _fedhpc_v1_HaStandby__Output } from '../../fedhpc/v1/HaStandby';
import type { NatsClusterHealth as _fedhpc_v1_NatsClusterHealth, NatsClusterHealth__Output as _fedhpc_v1_NatsClusterHealth__Output } from '../../fedhpc/v1/NatsClusterHealth';
import type { Long } from '@grpc/proto-loader';

export interface HaStatus {
  'role'?: (string);
  'name'?: (string);
  'term'?: (number | string | Long);
  'address'?: (string);
  'leaseAgeMs'?: (number | string | Long);
  'leaseTtlMs'?: (number | string | Long);
  'standbys'?: (_fedhpc_v1_HaStandby)[];
  'nats'?: (_fedhpc_v1_NatsClusterHealth | null);
}

export interface HaStatus__Output {
  'role': (string);
  'name': (string);
  'term': (string);
  'address': (string);
  'leaseAgeMs': (string);
  'leaseTtlMs': (string);
  'standbys': (_fedhpc_v1_HaStandby__Output)[];
  'nats': (_fedhpc_v1_NatsClusterHealth__Output | null);
}
