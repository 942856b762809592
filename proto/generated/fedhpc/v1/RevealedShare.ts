// Original file: proto/fedhpc/v1/fedhpc.proto


export interface RevealedShare {
  'owner'?: (string);
  'kind'?: (string);
  'x'?: (number);
  'y'?: (Buffer | Uint8Array | string);
}

export interface RevealedShare__Output {
  'owner': (string);
  'kind': (string);
  'x': (number);
  'y': (Buffer);
}
