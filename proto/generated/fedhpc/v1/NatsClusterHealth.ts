// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface NatsClusterHealth {
  'connectedServer'?: (string);
  'journalLeader'?: (string);
  'peersCurrent'?: (number);
  'peersTotal'?: (number);
  'checkedMsAgo'?: (number | string | Long);
  'error'?: (string);
}

export interface NatsClusterHealth__Output {
  'connectedServer': (string);
  'journalLeader': (string);
  'peersCurrent': (number);
  'peersTotal': (number);
  'checkedMsAgo': (string);
  'error': (string);
}
