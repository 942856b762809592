// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ShardStatus {
  'shardId'?: (string);
  'endpoint'?: (string);
  'state'?: (string);
  'sinceMs'?: (number | string | Long);
  'shardIndex'?: (number);
  'firstValue'?: (number | string | Long);
  'endValue'?: (number | string | Long);
  'problem'?: (string);
  'freeBytes'?: (number | string | Long);
  'peer'?: (string);
  'uploadsAdmitted'?: (number);
  'uploadsReceived'?: (number);
  'bytesReceived'?: (number | string | Long);
  'downloadsAdmitted'?: (number);
  'downloadsServed'?: (number);
  'bytesSent'?: (number | string | Long);
}

export interface ShardStatus__Output {
  'shardId': (string);
  'endpoint': (string);
  'state': (string);
  'sinceMs': (string);
  'shardIndex': (number);
  'firstValue': (string);
  'endValue': (string);
  'problem': (string);
  'freeBytes': (string);
  'peer': (string);
  'uploadsAdmitted': (number);
  'uploadsReceived': (number);
  'bytesReceived': (string);
  'downloadsAdmitted': (number);
  'downloadsServed': (number);
  'bytesSent': (string);
}
