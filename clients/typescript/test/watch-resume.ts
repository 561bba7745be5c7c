// Submits a job due in a few seconds and watches it to its end, printing every
// event and every reconnect. Prints `watching` once the first event is in, for
// whoever stops and restarts the service meanwhile.
//
//   node dist/test/watch-resume.js ADDRESS TARGET_URL
import { Client, Code, JobEventKind, JobStatus } from "../src";

const DUE_IN_MS = 5000;

async function main(address: string, targetUrl: string): Promise<void> {
  const client = new Client(address);
  try {
    const { id } = await client.submitJob({
      request: { method: "POST", url: targetUrl, json: { resumed: true } },
      scheduleTime: new Date(Date.now() + DUE_IN_MS),
    });
    console.log(`submitted ${id}`);
    const events = client.watchJobs(
      { ids: [id], snapshot: true },
      { onReconnect: (error, attempt) => console.log(`reconnect ${attempt} after ${Code[error.code]}`) },
    );
    let first = true;
    for await (const event of events) {
      console.log(`event ${JobEventKind[event.kind]} ${JobStatus[event.status]}`);
      if (first) {
        console.log("watching");
        first = false;
      }
    }
    console.log("ended");
  } finally {
    client.close();
  }
}

const [address, targetUrl] = process.argv.slice(2);
main(address, targetUrl).catch((error: unknown) => {
  console.error(String(error));
  process.exit(1);
});
