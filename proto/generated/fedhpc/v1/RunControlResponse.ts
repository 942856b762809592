// Original file: proto/fedhpc/v1/fedhpc.proto


export interface RunControlResponse {
  'runId'?: (string);
  'runState'?: (string);
  'message'?: (string);
}

export interface RunControlResponse__Output {
  'runId': (string);
  'runState': (string);
  'message': (string);
}
