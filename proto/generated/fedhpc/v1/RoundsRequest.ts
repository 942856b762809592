// Original file: proto/fedhpc/v1/fedhpc.proto


export interface RoundsRequest {
}

export interface RoundsRequest__Output {
}
