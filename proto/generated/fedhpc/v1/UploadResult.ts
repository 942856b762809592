// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface UploadResult {
  'accepted'?: (boolean);
  'receivedBytes'?: (number | string | Long);
  'message'?: (string);
  'complete'?: (boolean);
  'sha256'?: (string);
}

export interface UploadResult__Output {
  'accepted': (boolean);
  'receivedBytes': (string);
  'message': (string);
  'complete': (boolean);
  'sha256': (string);
}
