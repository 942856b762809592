// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface ModelChunk {
  'offset'?: (number | string | Long);
  'data'?: (Buffer | Uint8Array | string);
  'totalBytes'?: (number | string | Long);
  'crc32c'?: (number);
}

export interface ModelChunk__Output {
  'offset': (string);
  'data': (Buffer);
  'totalBytes': (string);
  'crc32c': (number);
}
