// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface UploadAck {
  'offset'?: (number | string | Long);
}

export interface UploadAck__Output {
  'offset': (string);
}
