// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface SiteLogLine {
  'tsMs'?: (number | string | Long);
  'kind'?: (string);
  'message'?: (string);
}

export interface SiteLogLine__Output {
  'tsMs': (string);
  'kind': (string);
  'message': (string);
}
