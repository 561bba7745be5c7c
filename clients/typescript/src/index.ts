/**
 * A client for jobqueue, the durable job queue whose jobs are HTTP calls.
 *
 * - {@link Client}: a connection with promise-returning job methods and the
 *   generated client of every service.
 * - {@link JobqueueError}: what every failed call rejects with, its bad fields decoded.
 * - {@link watchJobs}: a job watch that reconnects and resumes by itself.
 * - The messages, enums and service clients generated from the service's proto
 *   (`jobqueue.v1`); `google.protobuf.Value` and `Struct` fields are plain JSON values.
 *
 * @packageDocumentation
 */
export { Client, unary, type ClientOptions, type DeepPartial, type TlsOptions } from "./client";
export { JobqueueError, type FieldViolation } from "./errors";
export { watchJobs, type WatchOptions } from "./watch";
export * from "./gen/jobqueue/v1/jobs";
export * from "./gen/jobqueue/v1/queues";
export * from "./gen/jobqueue/v1/schedules";
export * from "./gen/jobqueue/v1/chains";
export * from "./gen/jobqueue/v1/contracts";
export * from "./gen/jobqueue/v1/templates";
export * from "./gen/jobqueue/v1/keys";
export * from "./gen/jobqueue/v1/audit";
export { Duration } from "./gen/google/protobuf/duration";
export { status as Code, Metadata, type CallOptions } from "@grpc/grpc-js";
