// Original file: proto/fedhpc/v1/fedhpc.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { ApproveSiteRequest as _fedhpc_v1_ApproveSiteRequest, ApproveSiteRequest__Output as _fedhpc_v1_ApproveSiteRequest__Output } from '../../fedhpc/v1/ApproveSiteRequest';
import type { ApproveSiteResponse as _fedhpc_v1_ApproveSiteResponse, ApproveSiteResponse__Output as _fedhpc_v1_ApproveSiteResponse__Output } from '../../fedhpc/v1/ApproveSiteResponse';
import type { Event as _fedhpc_v1_Event, Event__Output as _fedhpc_v1_Event__Output } from '../../fedhpc/v1/Event';
import type { EventsRequest as _fedhpc_v1_EventsRequest, EventsRequest__Output as _fedhpc_v1_EventsRequest__Output } from '../../fedhpc/v1/EventsRequest';
import type { RevokeSiteRequest as _fedhpc_v1_RevokeSiteRequest, RevokeSiteRequest__Output as _fedhpc_v1_RevokeSiteRequest__Output } from '../../fedhpc/v1/RevokeSiteRequest';
import type { RevokeSiteResponse as _fedhpc_v1_RevokeSiteResponse, RevokeSiteResponse__Output as _fedhpc_v1_RevokeSiteResponse__Output } from '../../fedhpc/v1/RevokeSiteResponse';
import type { RoundDetail as _fedhpc_v1_RoundDetail, RoundDetail__Output as _fedhpc_v1_RoundDetail__Output } from '../../fedhpc/v1/RoundDetail';
import type { RoundRequest as _fedhpc_v1_RoundRequest, RoundRequest__Output as _fedhpc_v1_RoundRequest__Output } from '../../fedhpc/v1/RoundRequest';
import type { RoundsRequest as _fedhpc_v1_RoundsRequest, RoundsRequest__Output as _fedhpc_v1_RoundsRequest__Output } from '../../fedhpc/v1/RoundsRequest';
import type { RoundsResponse as _fedhpc_v1_RoundsResponse, RoundsResponse__Output as _fedhpc_v1_RoundsResponse__Output } from '../../fedhpc/v1/RoundsResponse';
import type { RunControlRequest as _fedhpc_v1_RunControlRequest, RunControlRequest__Output as _fedhpc_v1_RunControlRequest__Output } from '../../fedhpc/v1/RunControlRequest';
import type { RunControlResponse as _fedhpc_v1_RunControlResponse, RunControlResponse__Output as _fedhpc_v1_RunControlResponse__Output } from '../../fedhpc/v1/RunControlResponse';
import type { SiteLogsRequest as _fedhpc_v1_SiteLogsRequest, SiteLogsRequest__Output as _fedhpc_v1_SiteLogsRequest__Output } from '../../fedhpc/v1/SiteLogsRequest';
import type { SiteLogsResponse as _fedhpc_v1_SiteLogsResponse, SiteLogsResponse__Output as _fedhpc_v1_SiteLogsResponse__Output } from '../../fedhpc/v1/SiteLogsResponse';
import type { SitesRequest as _fedhpc_v1_SitesRequest, SitesRequest__Output as _fedhpc_v1_SitesRequest__Output } from '../../fedhpc/v1/SitesRequest';
import type { SitesResponse as _fedhpc_v1_SitesResponse, SitesResponse__Output as _fedhpc_v1_SitesResponse__Output } from '../../fedhpc/v1/SitesResponse';
import type { StartRunRequest as _fedhpc_v1_StartRunRequest, StartRunRequest__Output as _fedhpc_v1_StartRunRequest__Output } from '../../fedhpc/v1/StartRunRequest';
import type { StatusRequest as _fedhpc_v1_StatusRequest, StatusRequest__Output as _fedhpc_v1_StatusRequest__Output } from '../../fedhpc/v1/StatusRequest';
import type { StatusResponse as _fedhpc_v1_StatusResponse, StatusResponse__Output as _fedhpc_v1_StatusResponse__Output } from '../../fedhpc/v1/StatusResponse';
import type { UsageRequest as _fedhpc_v1_UsageRequest, UsageRequest__Output as _fedhpc_v1_UsageRequest__Output } from '../../fedhpc/v1/UsageRequest';
import type { UsageResponse as _fedhpc_v1_UsageResponse, UsageResponse__Output as _fedhpc_v1_UsageResponse__Output } from '../../fedhpc/v1/UsageResponse';

export interface AdminServiceClient extends grpc.Client {
  AbortRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  AbortRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  AbortRun(argument: _fedhpc_v1_RunControlRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  AbortRun(argument: _fedhpc_v1_RunControlRequest, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  abortRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  abortRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  abortRun(argument: _fedhpc_v1_RunControlRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  abortRun(argument: _fedhpc_v1_RunControlRequest, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  
  ApproveSite(argument: _fedhpc_v1_ApproveSiteRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_ApproveSiteResponse__Output>): grpc.ClientUnaryCall;
  ApproveSite(argument: _fedhpc_v1_ApproveSiteRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_ApproveSiteResponse__Output>): grpc.ClientUnaryCall;
  ApproveSite(argument: _fedhpc_v1_ApproveSiteRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_ApproveSiteResponse__Output>): grpc.ClientUnaryCall;
  ApproveSite(argument: _fedhpc_v1_ApproveSiteRequest, callback: grpc.requestCallback<_fedhpc_v1_ApproveSiteResponse__Output>): grpc.ClientUnaryCall;
  approveSite(argument: _fedhpc_v1_ApproveSiteRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_ApproveSiteResponse__Output>): grpc.ClientUnaryCall;
  approveSite(argument: _fedhpc_v1_ApproveSiteRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_ApproveSiteResponse__Output>): grpc.ClientUnaryCall;
  approveSite(argument: _fedhpc_v1_ApproveSiteRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_ApproveSiteResponse__Output>): grpc.ClientUnaryCall;
  approveSite(argument: _fedhpc_v1_ApproveSiteRequest, callback: grpc.requestCallback<_fedhpc_v1_ApproveSiteResponse__Output>): grpc.ClientUnaryCall;
  
  Events(argument: _fedhpc_v1_EventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Event__Output>;
  Events(argument: _fedhpc_v1_EventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Event__Output>;
  events(argument: _fedhpc_v1_EventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Event__Output>;
  events(argument: _fedhpc_v1_EventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_fedhpc_v1_Event__Output>;
  
  PauseRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  PauseRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  PauseRun(argument: _fedhpc_v1_RunControlRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  PauseRun(argument: _fedhpc_v1_RunControlRequest, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  pauseRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  pauseRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  pauseRun(argument: _fedhpc_v1_RunControlRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  pauseRun(argument: _fedhpc_v1_RunControlRequest, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  
  ResumeRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  ResumeRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  ResumeRun(argument: _fedhpc_v1_RunControlRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  ResumeRun(argument: _fedhpc_v1_RunControlRequest, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  resumeRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  resumeRun(argument: _fedhpc_v1_RunControlRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  resumeRun(argument: _fedhpc_v1_RunControlRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  resumeRun(argument: _fedhpc_v1_RunControlRequest, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  
  RevokeSite(argument: _fedhpc_v1_RevokeSiteRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RevokeSiteResponse__Output>): grpc.ClientUnaryCall;
  RevokeSite(argument: _fedhpc_v1_RevokeSiteRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RevokeSiteResponse__Output>): grpc.ClientUnaryCall;
  RevokeSite(argument: _fedhpc_v1_RevokeSiteRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RevokeSiteResponse__Output>): grpc.ClientUnaryCall;
  RevokeSite(argument: _fedhpc_v1_RevokeSiteRequest, callback: grpc.requestCallback<_fedhpc_v1_RevokeSiteResponse__Output>): grpc.ClientUnaryCall;
  revokeSite(argument: _fedhpc_v1_RevokeSiteRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RevokeSiteResponse__Output>): grpc.ClientUnaryCall;
  revokeSite(argument: _fedhpc_v1_RevokeSiteRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RevokeSiteResponse__Output>): grpc.ClientUnaryCall;
  revokeSite(argument: _fedhpc_v1_RevokeSiteRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RevokeSiteResponse__Output>): grpc.ClientUnaryCall;
  revokeSite(argument: _fedhpc_v1_RevokeSiteRequest, callback: grpc.requestCallback<_fedhpc_v1_RevokeSiteResponse__Output>): grpc.ClientUnaryCall;
  
  Round(argument: _fedhpc_v1_RoundRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundDetail__Output>): grpc.ClientUnaryCall;
  Round(argument: _fedhpc_v1_RoundRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RoundDetail__Output>): grpc.ClientUnaryCall;
  Round(argument: _fedhpc_v1_RoundRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundDetail__Output>): grpc.ClientUnaryCall;
  Round(argument: _fedhpc_v1_RoundRequest, callback: grpc.requestCallback<_fedhpc_v1_RoundDetail__Output>): grpc.ClientUnaryCall;
  round(argument: _fedhpc_v1_RoundRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundDetail__Output>): grpc.ClientUnaryCall;
  round(argument: _fedhpc_v1_RoundRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RoundDetail__Output>): grpc.ClientUnaryCall;
  round(argument: _fedhpc_v1_RoundRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundDetail__Output>): grpc.ClientUnaryCall;
  round(argument: _fedhpc_v1_RoundRequest, callback: grpc.requestCallback<_fedhpc_v1_RoundDetail__Output>): grpc.ClientUnaryCall;
  
  Rounds(argument: _fedhpc_v1_RoundsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  Rounds(argument: _fedhpc_v1_RoundsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  Rounds(argument: _fedhpc_v1_RoundsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  Rounds(argument: _fedhpc_v1_RoundsRequest, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  rounds(argument: _fedhpc_v1_RoundsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  rounds(argument: _fedhpc_v1_RoundsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  rounds(argument: _fedhpc_v1_RoundsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  rounds(argument: _fedhpc_v1_RoundsRequest, callback: grpc.requestCallback<_fedhpc_v1_RoundsResponse__Output>): grpc.ClientUnaryCall;
  
  SiteLogs(argument: _fedhpc_v1_SiteLogsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SiteLogsResponse__Output>): grpc.ClientUnaryCall;
  SiteLogs(argument: _fedhpc_v1_SiteLogsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_SiteLogsResponse__Output>): grpc.ClientUnaryCall;
  SiteLogs(argument: _fedhpc_v1_SiteLogsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SiteLogsResponse__Output>): grpc.ClientUnaryCall;
  SiteLogs(argument: _fedhpc_v1_SiteLogsRequest, callback: grpc.requestCallback<_fedhpc_v1_SiteLogsResponse__Output>): grpc.ClientUnaryCall;
  siteLogs(argument: _fedhpc_v1_SiteLogsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SiteLogsResponse__Output>): grpc.ClientUnaryCall;
  siteLogs(argument: _fedhpc_v1_SiteLogsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_SiteLogsResponse__Output>): grpc.ClientUnaryCall;
  siteLogs(argument: _fedhpc_v1_SiteLogsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SiteLogsResponse__Output>): grpc.ClientUnaryCall;
  siteLogs(argument: _fedhpc_v1_SiteLogsRequest, callback: grpc.requestCallback<_fedhpc_v1_SiteLogsResponse__Output>): grpc.ClientUnaryCall;
  
  Sites(argument: _fedhpc_v1_SitesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  Sites(argument: _fedhpc_v1_SitesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  Sites(argument: _fedhpc_v1_SitesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  Sites(argument: _fedhpc_v1_SitesRequest, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  sites(argument: _fedhpc_v1_SitesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  sites(argument: _fedhpc_v1_SitesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  sites(argument: _fedhpc_v1_SitesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  sites(argument: _fedhpc_v1_SitesRequest, callback: grpc.requestCallback<_fedhpc_v1_SitesResponse__Output>): grpc.ClientUnaryCall;
  
  StartRun(argument: _fedhpc_v1_StartRunRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  StartRun(argument: _fedhpc_v1_StartRunRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  StartRun(argument: _fedhpc_v1_StartRunRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  StartRun(argument: _fedhpc_v1_StartRunRequest, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  startRun(argument: _fedhpc_v1_StartRunRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  startRun(argument: _fedhpc_v1_StartRunRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  startRun(argument: _fedhpc_v1_StartRunRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  startRun(argument: _fedhpc_v1_StartRunRequest, callback: grpc.requestCallback<_fedhpc_v1_RunControlResponse__Output>): grpc.ClientUnaryCall;
  
  Status(argument: _fedhpc_v1_StatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  Status(argument: _fedhpc_v1_StatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  Status(argument: _fedhpc_v1_StatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  Status(argument: _fedhpc_v1_StatusRequest, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _fedhpc_v1_StatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _fedhpc_v1_StatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _fedhpc_v1_StatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _fedhpc_v1_StatusRequest, callback: grpc.requestCallback<_fedhpc_v1_StatusResponse__Output>): grpc.ClientUnaryCall;
  
  Usage(argument: _fedhpc_v1_UsageRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_UsageResponse__Output>): grpc.ClientUnaryCall;
  Usage(argument: _fedhpc_v1_UsageRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_UsageResponse__Output>): grpc.ClientUnaryCall;
  Usage(argument: _fedhpc_v1_UsageRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_UsageResponse__Output>): grpc.ClientUnaryCall;
  Usage(argument: _fedhpc_v1_UsageRequest, callback: grpc.requestCallback<_fedhpc_v1_UsageResponse__Output>): grpc.ClientUnaryCall;
  usage(argument: _fedhpc_v1_UsageRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_UsageResponse__Output>): grpc.ClientUnaryCall;
  usage(argument: _fedhpc_v1_UsageRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_fedhpc_v1_UsageResponse__Output>): grpc.ClientUnaryCall;
  usage(argument: _fedhpc_v1_UsageRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_fedhpc_v1_UsageResponse__Output>): grpc.ClientUnaryCall;
  usage(argument: _fedhpc_v1_UsageRequest, callback: grpc.requestCallback<_fedhpc_v1_UsageResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface AdminServiceHandlers extends grpc.UntypedServiceImplementation {
  AbortRun: grpc.handleUnaryCall<_fedhpc_v1_RunControlRequest__Output, _fedhpc_v1_RunControlResponse>;
  
  ApproveSite: grpc.handleUnaryCall<_fedhpc_v1_ApproveSiteRequest__Output, _fedhpc_v1_ApproveSiteResponse>;
  
  Events: grpc.handleServerStreamingCall<_fedhpc_v1_EventsRequest__Output, _fedhpc_v1_Event>;
  
  PauseRun: grpc.handleUnaryCall<_fedhpc_v1_RunControlRequest__Output, _fedhpc_v1_RunControlResponse>;
  
  ResumeRun: grpc.handleUnaryCall<_fedhpc_v1_RunControlRequest__Output, _fedhpc_v1_RunControlResponse>;
  
  RevokeSite: grpc.handleUnaryCall<_fedhpc_v1_RevokeSiteRequest__Output, _fedhpc_v1_RevokeSiteResponse>;
  
  Round: grpc.handleUnaryCall<_fedhpc_v1_RoundRequest__Output, _fedhpc_v1_RoundDetail>;
  
  Rounds: grpc.handleUnaryCall<_fedhpc_v1_RoundsRequest__Output, _fedhpc_v1_RoundsResponse>;
  
  SiteLogs: grpc.handleUnaryCall<_fedhpc_v1_SiteLogsRequest__Output, _fedhpc_v1_SiteLogsResponse>;
  
  Sites: grpc.handleUnaryCall<_fedhpc_v1_SitesRequest__Output, _fedhpc_v1_SitesResponse>;
  
  StartRun: grpc.handleUnaryCall<_fedhpc_v1_StartRunRequest__Output, _fedhpc_v1_RunControlResponse>;
  
  Status: grpc.handleUnaryCall<_fedhpc_v1_StatusRequest__Output, _fedhpc_v1_StatusResponse>;
  
  Usage: grpc.handleUnaryCall<_fedhpc_v1_UsageRequest__Output, _fedhpc_v1_UsageResponse>;
  
}

export interface AdminServiceDefinition extends grpc.ServiceDefinition {
  AbortRun: MethodDefinition<_fedhpc_v1_RunControlRequest, _fedhpc_v1_RunControlResponse, _fedhpc_v1_RunControlRequest__Output, _fedhpc_v1_RunControlResponse__Output>
  ApproveSite: MethodDefinition<_fedhpc_v1_ApproveSiteRequest, _fedhpc_v1_ApproveSiteResponse, _fedhpc_v1_ApproveSiteRequest__Output, _fedhpc_v1_ApproveSiteResponse__Output>
  Events: MethodDefinition<_fedhpc_v1_EventsRequest, _fedhpc_v1_Event, _fedhpc_v1_EventsRequest__Output, _fedhpc_v1_Event__Output>
  PauseRun: MethodDefinition<_fedhpc_v1_RunControlRequest, _fedhpc_v1_RunControlResponse, _fedhpc_v1_RunControlRequest__Output, _fedhpc_v1_RunControlResponse__Output>
  ResumeRun: MethodDefinition<_fedhpc_v1_RunControlRequest, _fedhpc_v1_RunControlResponse, _fedhpc_v1_RunControlRequest__Output, _fedhpc_v1_RunControlResponse__Output>
  RevokeSite: MethodDefinition<_fedhpc_v1_RevokeSiteRequest, _fedhpc_v1_RevokeSiteResponse, _fedhpc_v1_RevokeSiteRequest__Output, _fedhpc_v1_RevokeSiteResponse__Output>
  Round: MethodDefinition<_fedhpc_v1_RoundRequest, _fedhpc_v1_RoundDetail, _fedhpc_v1_RoundRequest__Output, _fedhpc_v1_RoundDetail__Output>
  Rounds: MethodDefinition<_fedhpc_v1_RoundsRequest, _fedhpc_v1_RoundsResponse, _fedhpc_v1_RoundsRequest__Output, _fedhpc_v1_RoundsResponse__Output>
  SiteLogs: MethodDefinition<_fedhpc_v1_SiteLogsRequest, _fedhpc_v1_SiteLogsResponse, _fedhpc_v1_SiteLogsRequest__Output, _fedhpc_v1_SiteLogsResponse__Output>
  Sites: MethodDefinition<_fedhpc_v1_SitesRequest, _fedhpc_v1_SitesResponse, _fedhpc_v1_SitesRequest__Output, _fedhpc_v1_SitesResponse__Output>
  StartRun: MethodDefinition<_fedhpc_v1_StartRunRequest, _fedhpc_v1_RunControlResponse, _fedhpc_v1_StartRunRequest__Output, _fedhpc_v1_RunControlResponse__Output>
  Status: MethodDefinition<_fedhpc_v1_StatusRequest, _fedhpc_v1_StatusResponse, _fedhpc_v1_StatusRequest__Output, _fedhpc_v1_StatusResponse__Output>
  Usage: MethodDefinition<_fedhpc_v1_UsageRequest, _fedhpc_v1_UsageResponse, _fedhpc_v1_UsageRequest__Output, _fedhpc_v1_UsageResponse__Output>
}
