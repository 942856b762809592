// Original file: proto/fedhpc/v1/fedhpc.proto

import type { Long } from '@grpc/proto-loader';

export interface RoundUsage {
  'source'?: (string);
  'gpus'?: (number);
  'wallMs'?: (number | string | Long);
  'allocatedGpuMs'?: (number | string | Long);
  'trainingGpuMs'?: (number | string | Long);
  'jobs'?: (string);
  'reason'?: (string);
}

export interface RoundUsage__Output {
  'source': (string);
  'gpus': (number);
  'wallMs': (string);
  'allocatedGpuMs': (string);
  'trainingGpuMs': (string);
  'jobs': (string);
  'reason': (string);
}
