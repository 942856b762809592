// Original file: proto/fedhpc/v1/fedhpc.proto


export interface TensorDigest {
  'tensor'?: (number);
  'sha256'?: (string);
}

export interface TensorDigest__Output {
  'tensor': (number);
  'sha256': (string);
}
