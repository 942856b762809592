// Original file: proto/fedhpc/v1/fedhpc.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { Event as _fedhpc_v1_Event, Event__Output as _fedhpc_v1_Event__Output } from '../../fedhpc/v1/Event';
import type { EventsRequest as _fedhpc_v1_EventsRequest, EventsRequest__Output as _fedhpc_v1_EventsRequest__Output } from '../../fedhpc/v1/EventsRequest';
import type { RoundsRequest as _fedhpc_v1_RoundsRequest, RoundsRequest__Output as _fedhpc_v1_RoundsRequest__Output } from '../../fedhpc/v1/RoundsRequest';
import type { RoundsResponse as _fedhpc_v1_RoundsResponse, RoundsResponse__Output as _fedhpc_v1_RoundsResponse__Output } from '../../fedhpc/v1/RoundsResponse';
import type { SitesRequest as _fedhpc_v1_SitesRequest, SitesRequest__Output as _fedhpc_v1_SitesRequest__Output } from '../../fedhpc/v1/SitesRequest';
import type { SitesResponse as _fedhpc_v1_SitesResponse, SitesResponse__Output as _fedhpc_v1_SitesResponse__Output } from '../../fedhpc/v1/SitesResponse';
import type { StatusRequest as _fedhpc_v1_StatusRequest, StatusRequest__Output as _fedhpc_v1_StatusRequest__Output } from '../../fedhpc/v1/StatusRequest';
import type { StatusResponse as _fedhpc_v1_StatusResponse, StatusResponse__Output as _fedhpc_v1_StatusResponse__Output } from '../../fedhpc/v1/StatusResponse';

export interface AdminServiceClient extends grpc.Client {
  Events(argument: _fedhpc_v1_EventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Event__Output>;
  Events(argument: _fedhpc_v1_EventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Event__Output>;
  events(argument: _fedhpc_v1_EventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Event__Output>;
  events(argument: _fedhpc_v1_EventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Event__Output>;
  
  Rounds(argument: _fedhpc_v1_RoundsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  Rounds(argument: _fedhpc_v1_RoundsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  Rounds(argument: _fedhpc_v1_RoundsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  Rounds(argument: _fedhpc_v1_RoundsRequest, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  rounds(argument: _fedhpc_v1_RoundsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  rounds(argument: _fedhpc_v1_RoundsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  rounds(argument: _fedhpc_v1_RoundsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  rounds(argument: _fedhpc_v1_RoundsRequest, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  
  Sites(argument: _fedhpc_v1_SitesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  Sites(argument: _fedhpc_v1_SitesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  Sites(argument: _fedhpc_v1_SitesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  Sites(argument: _fedhpc_v1_SitesRequest, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  sites(argument: _fedhpc_v1_SitesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  sites(argument: _fedhpc_v1_SitesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  sites(argument: _fedhpc_v1_SitesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  sites(argument: _fedhpc_v1_SitesRequest, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  
  Status(argument: _fedhpc_v1_StatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  Status(argument: _fedhpc_v1_StatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  Status(argument: _fedhpc_v1_StatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  Status(argument: _fedhpc_v1_StatusRequest, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _fedhpc_v1_StatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _fedhpc_v1_StatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _fedhpc_v1_StatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _fedhpc_v1_StatusRequest, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface AdminServiceHandlers extends grpc.UntypedServiceImplementation {
  Events: grpc.handleServerStreamingCall<_fedhpc_v1_EventsRequest__Output, _fedhpc_v1_Event>;
  
  Rounds: grpc.handleUnaryCall<_fedhpc_v1_RoundsRequest__Output, _fedhpc_v1_RoundsResponse>;
  
  Sites: grpc.handleUnaryCall<_fedhpc_v1_SitesRequest__Output, _fedhpc_v1_SitesResponse>;
  
  Status: grpc.handleUnaryCall<_fedhpc_v1_StatusRequest__Output, _fedhpc_v1_StatusResponse>;
  
}

export interface AdminServiceDefinition extends grpc.ServiceDefinition {
  Events: MethodDefinition<_fedhpc_v1_EventsRequest, _fedhpc_v1_Event, _fedhpc_v1_EventsRequest__Output, _fedhpc_v1_Event__Output>
  Rounds: MethodDefinition<_fedhpc_v1_RoundsRequest, _fedhpc_v1_RoundsResponse, _fedhpc_v1_RoundsRequest__Output, _fedhpc_v1_RoundsResponse__Output>
  Sites: MethodDefinition<_fedhpc_v1_SitesRequest, _fedhpc_v1_SitesResponse, _fedhpc_v1_SitesRequest__Output, _fedhpc_v1_SitesResponse__Output>
  Status: MethodDefinition<_fedhpc_v1_StatusRequest, _fedhpc_v1_StatusResponse, _fedhpc_v1_StatusRequest__Output, _fedhpc_v1_StatusResponse__Output>
}
