// Original file: proto/fedhpc/v1/fedhpc.proto

import type { UploadHeader as _fedhpc_v1_UploadHeader, UploadHeader__Output as _fedhpc_v1_UploadHeader__Output } from '../../fedhpc/v1/UploadHeader';
import type { Long } from '@grpc/proto-loader';

export interface ShardAdmit {
  'siteId'?: (string);
  'header'?: (_fedhpc_v1_UploadHeader | null);
  'weight'?: (number | string);
  'maxChunkBytes'?: (number);
  'idleMs'?: (number);
  'maxStreams'?: (number);
  'windowBytes'?: (number | string | Long);
}

export interface ShardAdmit__Output {
  'siteId': (string);
  'header': (_fedhpc_v1_UploadHeader__Output | null);
  'weight': (number);
  'maxChunkBytes': (number);
  'idleMs': (number);
  'maxStreams': (number);
  'windowBytes': (string);
}
