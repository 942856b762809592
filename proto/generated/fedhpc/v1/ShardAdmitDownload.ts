// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ShardAdmitDownload {
  'siteId'?: (string);
  'sha256'?: (string);
  'start'?: (number | string | Long);
  'end'?: (number | string | Long);
  'maxChunkBytes'?: (number);
  'idleMs'?: (number);
}

export interface ShardAdmitDownload__Output {
  'siteId': (string);
  'sha256': (string);
  'start': (string);
  'end': (string);
  'maxChunkBytes': (number);
  'idleMs': (number);
}
