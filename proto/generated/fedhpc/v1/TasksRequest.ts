// Original file: proto/fedhpc/v1/fedhpc.proto


export interface TasksRequest {
}

export interface TasksRequest__Output {
}
