// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface KeyAdvertisement {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'siteId'?: (string);
  'cPublicKey'?: (Buffer | Uint8Array | string);
  'sPublicKey'?: (Buffer | Uint8Array | string);
  'signature'?: (Buffer | Uint8Array | string);
  'certificatePem'?: (string);
}

export interface KeyAdvertisement__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'siteId': (string);
  'cPublicKey': (Buffer);
  'sPublicKey': (Buffer);
  'signature': (Buffer);
  'certificatePem': (string);
}
