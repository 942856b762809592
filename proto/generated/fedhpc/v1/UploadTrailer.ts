// Original file: proto/fedhpc/v1/fedhpc.proto


export interface UploadTrailer {
  'sha256'?: (string);
}

export interface UploadTrailer__Output {
  'sha256': (string);
}
