// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface UploadResend {
  'offset'?: (number | string | Long);
  'reason'?: (string);
}

export interface UploadResend__Output {
  'offset': (string);
  'reason': (string);
}
