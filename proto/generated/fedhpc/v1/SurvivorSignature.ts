// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface SurvivorSignature {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'siteId'?: (string);
  'signature'?: (Buffer | Uint8Array | string);
}

export interface SurvivorSignature__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'siteId': (string);
  'signature': (Buffer);
}
