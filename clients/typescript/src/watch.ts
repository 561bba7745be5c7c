import { status as Code } from "@grpc/grpc-js";
import { setTimeout as sleep } from "node:timers/promises";
import { JobEventKind, type JobEvent, type JobServiceClient, type WatchJobsRequest } from "./gen/jobqueue/v1/jobs";
import { JobqueueError } from "./errors";

/** How {@link watchJobs} reconnects. */
export interface WatchOptions {
  /** The wait before the first reconnect, doubled at each failure in a row. Default 200 ms. */
  initialDelayMs?: number;
  /** The longest wait between reconnects. Default 5 s. */
  maxDelayMs?: number;
  /**
   * Reconnects in a row, none of which got an event, before the last error is
   * thrown. Default 10 (about half a minute); `Infinity` never gives up.
   */
  maxRetries?: number;
  /** Also yield HEARTBEAT events (they carry only a cursor). Default false. */
  heartbeats?: boolean;
  /** Called before each reconnect with the error that broke the stream and the wait. */
  onReconnect?: (error: JobqueueError, attempt: number, delayMs: number) => void;
}

/**
 * Streams `WatchJobs` and keeps it going across broken connections and service
 * restarts.
 *
 * A stream that ends with UNAVAILABLE (the service stopped, or the connection
 * broke) is opened again after a backoff, from the cursor of the last event
 * received (a heartbeat's included) and without `snapshot`: the service sends
 * every change after that cursor, none twice, also those made while the client
 * was away. Any other error is thrown as a {@link JobqueueError}; OUT_OF_RANGE
 * means the cursor is older than the service keeps: read the jobs again and
 * watch anew. Before the first event there is no cursor yet, so the request is
 * sent again as given: with `snapshot` that loses nothing, without it changes
 * in the gap can be missed.
 *
 * The iterable ends when the service ends the stream: watching by `ids`, once
 * every one of them has finished. Leaving the loop early cancels the call.
 */
export async function* watchJobs(
  jobs: JobServiceClient,
  request: WatchJobsRequest,
  options: WatchOptions = {},
): AsyncGenerator<JobEvent, void, undefined> {
  const { initialDelayMs = 200, maxDelayMs = 5000, maxRetries = 10, heartbeats = false, onReconnect } = options;
  let failures = 0;
  for (;;) {
    const call = jobs.watchJobs(request);
    let error: unknown;
    try {
      for await (const event of call as AsyncIterable<JobEvent>) {
        failures = 0;
        if (event.cursor) {
          request = { ...request, snapshot: false, cursor: event.cursor };
        }
        if (heartbeats || event.kind !== JobEventKind.JOB_EVENT_KIND_HEARTBEAT) {
          yield event;
        }
      }
      return;
    } catch (caught) {
      error = JobqueueError.from(caught);
    } finally {
      call.cancel();
    }
    if (!(error instanceof JobqueueError) || error.code !== Code.UNAVAILABLE || failures >= maxRetries) {
      throw error;
    }
    failures += 1;
    const backoff = Math.min(maxDelayMs, initialDelayMs * 2 ** (failures - 1));
    // Up to a fifth less, so that many watchers do not come back at once.
    const delay = Math.max(error.retryDelayMs ?? 0, backoff * (0.8 + Math.random() * 0.2));
    onReconnect?.(error, failures, delay);
    await sleep(delay);
  }
}
