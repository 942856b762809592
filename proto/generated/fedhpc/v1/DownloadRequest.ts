// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface DownloadRequest {
  'sha256'?: (string);
  'offset'?: (number | string | Long);
  'end'?: (number | string | Long);
}

export interface DownloadRequest__Output {
  'sha256': (string);
  'offset': (string);
  'end': (string);
}
