// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface UploadAccepted {
  'offset'?: (number | string | Long);
  'chunkBytes'?: (number);
  'windowBytes'?: (number | string | Long);
  'wholeDigest'?: (boolean);
}

export interface UploadAccepted__Output {
  'offset': (string);
  'chunkBytes': (number);
  'windowBytes': (string);
  'wholeDigest': (boolean);
}
