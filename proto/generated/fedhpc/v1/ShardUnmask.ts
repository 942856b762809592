// Original file: proto/fedhpc/v1/fedhpc.proto

import type { ShardDroppedPair as _fedhpc_v1_ShardDroppedPair, ShardDroppedPair__Output as _fedhpc_v1_ShardDroppedPair__Output } from '../../fedhpc/v1/ShardDroppedPair';

export interface ShardUnmask {
  'selfSeeds'?: (Buffer | Uint8Array | string)[];
  'droppedPairs'?: (_fedhpc_v1_ShardDroppedPair)[];
  'clip'?: (number | string);
  'quantBits'?: (number);
  'modulusBits'?: (number);
  'weightSum'?: (number | string);
}

export interface ShardUnmask__Output {
  'selfSeeds': (Buffer)[];
  'droppedPairs': (_fedhpc_v1_ShardDroppedPair__Output)[];
  'clip': (number);
  'quantBits': (number);
  'modulusBits': (number);
  'weightSum': (number);
}
