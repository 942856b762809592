// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface UploadChunk {
  'offset'?: (number | string | Long);
  'data'?: (Buffer | Uint8Array | string);
  'crc32c'?: (number);
}

export interface UploadChunk__Output {
  'offset': (string);
  'data': (Buffer);
  'crc32c': (number);
}
