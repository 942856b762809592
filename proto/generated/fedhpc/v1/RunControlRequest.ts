// Original file: proto/fedhpc/v1/fedhpc.proto


export interface RunControlRequest {
  'reason'?: (string);
}

export interface RunControlRequest__Output {
  'reason': (string);
}
