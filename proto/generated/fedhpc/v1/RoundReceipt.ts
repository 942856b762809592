// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface RoundReceipt {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'parentSha256'?: (string);
  'modelSha256'?: (string);
  'dataManifestSha256'?: (string);
  'signature'?: (Buffer | Uint8Array | string);
}

export interface RoundReceipt__Output {
  'runId': (string);
  'round': (string);
  'parentSha256': (string);
  'modelSha256': (string);
  'dataManifestSha256': (string);
  'signature': (Buffer);
}
