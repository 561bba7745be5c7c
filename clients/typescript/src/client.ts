import {
  Channel,
  credentials,
  InterceptingCall,
  Metadata,
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientUnaryCall,
  type Interceptor,
  type ServiceError,
} from "@grpc/grpc-js";
import { AuditServiceClient } from "./gen/jobqueue/v1/audit";
import { ChainServiceClient } from "./gen/jobqueue/v1/chains";
import { ContractServiceClient } from "./gen/jobqueue/v1/contracts";
import {
  CancelJobRequest,
  DeleteJobRequest,
  GetJobRequest,
  GetJobResultRequest,
  JobServiceClient,
  ListJobsRequest,
  RetryJobRequest,
  SubmitJobRequest,
  SubmitJobsRequest,
  WatchJobsRequest,
  type Job,
  type JobEvent,
  type JobResult,
  type JobSpec,
  type ListJobsResponse,
  type SubmitJobResponse,
  type SubmitJobsResponse,
} from "./gen/jobqueue/v1/jobs";
import { KeyServiceClient } from "./gen/jobqueue/v1/keys";
import { QueueServiceClient } from "./gen/jobqueue/v1/queues";
import { ScheduleServiceClient } from "./gen/jobqueue/v1/schedules";
import { TemplateServiceClient } from "./gen/jobqueue/v1/templates";
import { JobqueueError } from "./errors";
import { watchJobs, type WatchOptions } from "./watch";

/**
 * A message with every field optional, nested ones too: what a request is written
 * as. Unset fields take their proto defaults.
 */
export type DeepPartial<T> = T extends Date | Buffer | Uint8Array | string | number | boolean | undefined
  ? T
  : T extends Array<infer U>
    ? Array<DeepPartial<U>>
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

/** PEM files for a TLS connection; unset ones fall back to the system's roots and no client certificate. */
export interface TlsOptions {
  /** CA certificates the server's chain must lead to. */
  rootCerts?: Buffer;
  /** This client's certificate chain, for a service that asks for one (mTLS). */
  certChain?: Buffer;
  /** The key of `certChain`. */
  privateKey?: Buffer;
}

/** How a {@link Client} connects. */
export interface ClientOptions {
  /** An API key (`jq_...`), sent on every call as `authorization: Bearer <key>`. */
  apiKey?: string;
  /** Connect over TLS: `true` trusts the system's roots. Plaintext when unset. */
  tls?: boolean | TlsOptions;
  /**
   * grpc-js channel options, such as `grpc.keepalive_time_ms`. Reconnects back off
   * from 200 ms to 5 s unless `grpc.initial_reconnect_backoff_ms` and
   * `grpc.max_reconnect_backoff_ms` say otherwise.
   */
  channelOptions?: ChannelOptions;
}

/**
 * A connection to a jobqueue service: promise-returning methods for jobs, and the
 * generated clients of every service (`jobs`, `queues`, `schedules`, `chains`,
 * `contracts`, `templates`, `keys`, `audit`), all on one channel and all sending
 * the API key.
 *
 * Every method rejects with a {@link JobqueueError}.
 *
 * @example
 * ```ts
 * const client = new Client("localhost:50051", { apiKey: process.env.JOBQUEUE_KEY });
 * const { id } = await client.submitJob({ request: { method: "POST", url, json: { any: "object" } } });
 * ```
 */
export class Client {
  readonly jobs: JobServiceClient;
  readonly queues: QueueServiceClient;
  readonly schedules: ScheduleServiceClient;
  readonly chains: ChainServiceClient;
  readonly contracts: ContractServiceClient;
  readonly templates: TemplateServiceClient;
  readonly keys: KeyServiceClient;
  readonly audit: AuditServiceClient;
  private readonly channel: Channel;

  /** @param address `host:port` of the service. */
  constructor(address: string, options: ClientOptions = {}) {
    const creds = channelCredentials(options.tls);
    const channelOptions = { ...RECONNECT, ...options.channelOptions };
    this.channel = new Channel(address, creds, channelOptions);
    const shared = {
      ...channelOptions,
      channelOverride: this.channel,
      interceptors: options.apiKey === undefined ? [] : [presenting(options.apiKey)],
    };
    this.jobs = new JobServiceClient(address, creds, shared);
    this.queues = new QueueServiceClient(address, creds, shared);
    this.schedules = new ScheduleServiceClient(address, creds, shared);
    this.chains = new ChainServiceClient(address, creds, shared);
    this.contracts = new ContractServiceClient(address, creds, shared);
    this.templates = new TemplateServiceClient(address, creds, shared);
    this.keys = new KeyServiceClient(address, creds, shared);
    this.audit = new AuditServiceClient(address, creds, shared);
  }

  /** Submits one job; answers its id, its status, and whether its idempotency key named an existing job. */
  submitJob(job: DeepPartial<JobSpec>, options?: Partial<CallOptions>): Promise<SubmitJobResponse> {
    const request = SubmitJobRequest.fromPartial({ job });
    return unary(this.jobs.submitJob.bind(this.jobs), request, options);
  }

  /** Submits up to 1000 jobs, stored all or none; the answers are in the order of `jobs`. */
  submitJobs(jobs: DeepPartial<JobSpec>[], options?: Partial<CallOptions>): Promise<SubmitJobsResponse> {
    const request = SubmitJobsRequest.fromPartial({ jobs });
    return unary(this.jobs.submitJobs.bind(this.jobs), request, options);
  }

  /** Reads a job: its status, attempts, times and the request as submitted. */
  getJob(id: string, options?: Partial<CallOptions>): Promise<Job> {
    return unary(this.jobs.getJob.bind(this.jobs), GetJobRequest.fromPartial({ id }), options);
  }

  /** Reads a job's outcome: its final attempt and every attempt, with their responses. */
  getJobResult(id: string, options?: Partial<CallOptions>): Promise<JobResult> {
    return unary(this.jobs.getJobResult.bind(this.jobs), GetJobResultRequest.fromPartial({ id }), options);
  }

  /** Cancels a queued or running job; a finished one rejects with FAILED_PRECONDITION. */
  cancelJob(id: string, options?: Partial<CallOptions>): Promise<Job> {
    return unary(this.jobs.cancelJob.bind(this.jobs), CancelJobRequest.fromPartial({ id }), options);
  }

  /** Queues a failed or canceled job again with a fresh attempt budget. */
  retryJob(id: string, options?: Partial<CallOptions>): Promise<Job> {
    return unary(this.jobs.retryJob.bind(this.jobs), RetryJobRequest.fromPartial({ id }), options);
  }

  /** Removes a finished job and its result. */
  async deleteJob(id: string, options?: Partial<CallOptions>): Promise<void> {
    await unary(this.jobs.deleteJob.bind(this.jobs), DeleteJobRequest.fromPartial({ id }), options);
  }

  /** One page of jobs, newest first; pass `nextPageToken` back as `pageToken` for the next. */
  listJobs(request: DeepPartial<ListJobsRequest> = {}, options?: Partial<CallOptions>): Promise<ListJobsResponse> {
    return unary(this.jobs.listJobs.bind(this.jobs), ListJobsRequest.fromPartial(request), options);
  }

  /**
   * The status changes of the jobs `request` names, as an async iterable that
   * survives a broken stream: it reconnects with backoff and resumes after the
   * last event's cursor, so no change is missed or seen twice. It ends when the
   * service ends the stream (watching by `ids`: once every one has finished).
   * Leaving the loop cancels the call. See {@link watchJobs}.
   */
  watchJobs(request: DeepPartial<WatchJobsRequest>, options?: WatchOptions): AsyncIterable<JobEvent> {
    return watchJobs(this.jobs, WatchJobsRequest.fromPartial(request), options);
  }

  /** Closes the channel; calls in flight are canceled. */
  close(): void {
    this.channel.close();
  }
}

/**
 * The channel reconnects within 200 ms to 5 s, as a watch does, rather than grpc's
 * 1 s to 120 s: after a long outage a watch's reconnects would otherwise fail
 * fast against a channel still waiting out its own backoff, and give up.
 */
const RECONNECT: ChannelOptions = {
  "grpc.initial_reconnect_backoff_ms": 200,
  "grpc.max_reconnect_backoff_ms": 5000,
};

function channelCredentials(tls: ClientOptions["tls"]): ChannelCredentials {
  if (!tls) {
    return credentials.createInsecure();
  }
  const pem = tls === true ? {} : tls;
  return credentials.createSsl(pem.rootCerts ?? null, pem.privateKey ?? null, pem.certChain ?? null);
}

/** Adds the API key to every call's metadata. Call credentials would refuse a plaintext channel. */
function presenting(apiKey: string): Interceptor {
  return (options, next) =>
    new InterceptingCall(next(options), {
      start(metadata, listener, start) {
        metadata.set("authorization", `Bearer ${apiKey}`);
        start(metadata, listener);
      },
    });
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** A unary call of a generated client as a promise that rejects with a JobqueueError. */
export function unary<Req, Res>(
  method: UnaryMethod<Req, Res>,
  request: Req,
  options: Partial<CallOptions> = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method(request, new Metadata(), options, (error, response) => {
      if (error) {
        reject(JobqueueError.from(error));
      } else {
        resolve(response);
      }
    });
  });
}
