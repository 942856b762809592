// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface Event {
  'kind'?: (string);
  'tsMs'?: (number | string | Long);
  'json'?: (string);
}

export interface Event__Output {
  'kind': (string);
  'tsMs': (string);
  'json': (string);
}
