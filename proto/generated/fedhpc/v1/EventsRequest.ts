// Original file: proto/fedhpc/v1/fedhpc.proto


export interface EventsRequest {
}

export interface EventsRequest__Output {
}
