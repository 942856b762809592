// Original file: proto/fedhpc/v1/fedhpc.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { ShardInstruction as _fedhpc_v1_ShardInstruction, ShardInstruction__Output as _fedhpc_v1_ShardInstruction__Output } from '../../fedhpc/v1/ShardInstruction';
import type { ShardReport as _fedhpc_v1_ShardReport, ShardReport__Output as _fedhpc_v1_ShardReport__Output } from '../../fedhpc/v1/ShardReport';

export interface AggregatorServiceClient extends grpc.Client {
  Attach(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_ShardReport, _fedhpc_v1_ShardInstruction__Output>;
  Attach(options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_ShardReport, _fedhpc_v1_ShardInstruction__Output>;
  attach(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_ShardReport, _fedhpc_v1_ShardInstruction__Output>;
  attach(options?: grpc.CallOptions): grpc.ClientDuplexStream<_fedhpc_v1_ShardReport, _fedhpc_v1_ShardInstruction__Output>;
  
}

export interface AggregatorServiceHandlers extends grpc.UntypedServiceImplementation {
  Attach: grpc.handleBidiStreamingCall<_fedhpc_v1_ShardReport__Output, _fedhpc_v1_ShardInstruction>;
  
}

export interface AggregatorServiceDefinition extends grpc.ServiceDefinition {
  Attach: MethodDefinition<_fedhpc_v1_ShardReport, _fedhpc_v1_ShardInstruction, _fedhpc_v1_ShardReport__Output, _fedhpc_v1_ShardInstruction__Output>
}
