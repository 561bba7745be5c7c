import { Metadata, status as Code, type ServiceError } from "@grpc/grpc-js";
import { BadRequest, RetryInfo } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";
import type { Any } from "./gen/google/protobuf/any";

/** One bad field of a request, as the service names it (`job.request.url`, `jobs[2].ttl`). */
export interface FieldViolation {
  /** The field's path in the request. */
  field: string;
  /** What was wrong with it, or what was expected. */
  description: string;
}

const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";
const RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo";

/**
 * A call that ended with a status other than OK.
 *
 * The service puts its error details in the `grpc-status-details-bin` trailer as a
 * `google.rpc.Status`; the ones a client acts on are decoded here: the bad fields
 * of an `INVALID_ARGUMENT` (`google.rpc.BadRequest`) and the retry hint of a
 * `RESOURCE_EXHAUSTED` or `UNAVAILABLE` (`google.rpc.RetryInfo`). The message
 * names the code, the service's words and every bad field they leave out.
 */
export class JobqueueError extends Error {
  /** The gRPC status code. */
  readonly code: Code;
  /** The service's message, as sent (without the code or the fields). */
  readonly details: string;
  /** The bad fields of the request; empty unless the service named some. */
  readonly fieldViolations: FieldViolation[];
  /** How long the service asks the client to wait before trying again, when it says. */
  readonly retryDelayMs: number | undefined;
  /** Every detail of the `google.rpc.Status`, decoded or not. */
  readonly statusDetails: Any[];
  /** The call's trailing metadata. */
  readonly metadata: Metadata;

  constructor(code: Code, details: string, metadata: Metadata = new Metadata(), cause?: unknown) {
    const rich = decodeStatus(metadata);
    const fieldViolations = rich.details
      .filter((d) => d.typeUrl === BAD_REQUEST)
      .flatMap((d) => BadRequest.decode(d.value).fieldViolations)
      .map(({ field, description }) => ({ field, description }));
    const retry = rich.details.find((d) => d.typeUrl === RETRY_INFO);
    const delay = retry && RetryInfo.decode(retry.value).retryDelay;
    // The service's message usually names the fields already: add the ones it does not.
    const fields = fieldViolations
      .filter((v) => !details.includes(v.field))
      .map((v) => `${v.field}: ${v.description}`)
      .join("; ");
    super(`${Code[code] ?? code}: ${details}${fields ? ` [${fields}]` : ""}`, { cause });
    this.name = "JobqueueError";
    this.code = code;
    this.details = details;
    this.fieldViolations = fieldViolations;
    this.retryDelayMs = delay ? delay.seconds * 1000 + delay.nanos / 1e6 : undefined;
    this.statusDetails = rich.details;
    this.metadata = metadata;
  }

  /** `error` as a JobqueueError when it is a failed gRPC call; anything else as it is. */
  static from(error: unknown): unknown {
    if (error instanceof JobqueueError || !isServiceError(error)) {
      return error;
    }
    return new JobqueueError(error.code, error.details, error.metadata, error);
  }
}

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as ServiceError).code === "number" && "metadata" in error;
}

function decodeStatus(metadata: Metadata): Status {
  const [bin] = metadata.get("grpc-status-details-bin");
  if (!(bin instanceof Buffer)) {
    return Status.fromPartial({});
  }
  try {
    return Status.decode(bin);
  } catch {
    // Details that do not parse leave the code and message to go by.
    return Status.fromPartial({});
  }
}
