// Original file: proto/fedhpc/v1/fedhpc.proto


export interface Encoding {
  'name'?: (string);
}

export interface Encoding__Output {
  'name': (string);
}
