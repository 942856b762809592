// Original file: proto/fedhpc/v1/fedhpc.proto


export interface ShardDroppedPair {
  'survivor'?: (string);
  'dropped'?: (string);
  'seed'?: (Buffer | Uint8Array | string);
}

export interface ShardDroppedPair__Output {
  'survivor': (string);
  'dropped': (string);
  'seed': (Buffer);
}
