// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface UsageRequest {
  'siteId'?: (string);
  'fromMs'?: (number | string | Long);
  'toMs'?: (number | string | Long);
}

export interface UsageRequest__Output {
  'siteId': (string);
  'fromMs': (string);
  'toMs': (string);
}
