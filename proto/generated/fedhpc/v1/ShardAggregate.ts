// Original file: proto/fedhpc/v1/fedhpc.proto

import type { ShardInput as _fedhpc_v1_ShardInput, ShardInput__Output as _fedhpc_v1_ShardInput__Output } from '../../fedhpc/v1/ShardInput';
import type { StagedFile as _fedhpc_v1_StagedFile, StagedFile__Output as _fedhpc_v1_StagedFile__Output } from '../../fedhpc/v1/StagedFile';
import type { ShardUnmask as _fedhpc_v1_ShardUnmask, ShardUnmask__Output as _fedhpc_v1_ShardUnmask__Output } from '../../fedhpc/v1/ShardUnmask';
import type { Long } from '@grpc/proto-loader';

export interface ShardAggregate {
  'runId'?: (string);
  'round'?: (number | string | Long);
  'attempt'?: (number);
  'globalModelSha256'?: (string);
  'previousStateSha256'?: (string);
  'optimizerJson'?: (string);
  'step'?: (number | string | Long);
  'inputs'?: (_fedhpc_v1_ShardInput)[];
  'files'?: (_fedhpc_v1_StagedFile)[];
  'sliceElements'?: (number);
  'unmask'?: (_fedhpc_v1_ShardUnmask | null);
  'aggregatorJson'?: (string);
}

export interface ShardAggregate__Output {
  'runId': (string);
  'round': (string);
  'attempt': (number);
  'globalModelSha256': (string);
  'previousStateSha256': (string);
  'optimizerJson': (string);
  'step': (string);
  'inputs': (_fedhpc_v1_ShardInput__Output)[];
  'files': (_fedhpc_v1_StagedFile__Output)[];
  'sliceElements': (number);
  'unmask': (_fedhpc_v1_ShardUnmask__Output | null);
  'aggregatorJson': (string);
}
