// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface TransferProgress {
  'direction'?: (string);
  'bytes'?: (number | string | Long);
  'totalBytes'?: (number | string | Long);
  'rateBytesPerS'?: (number | string);
}

export interface TransferProgress__Output {
  'direction': (string);
  'bytes': (string);
  'totalBytes': (string);
  'rateBytesPerS': (number);
}
