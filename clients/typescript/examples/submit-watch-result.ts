// Submits a POST with a JSON body, watches the job to its end, and reads the result.
//
//   node dist/examples/submit-watch-result.js ADDRESS TARGET_URL
//
// JOBQUEUE_KEY, when set, is the API key to present.
import { Client, JobStatus } from "../src";

async function main(address: string, targetUrl: string): Promise<void> {
  const client = new Client(address, { apiKey: process.env.JOBQUEUE_KEY });
  try {
    const order = { order: 1042, customer: "Ada", items: [{ sku: "A-1", qty: 2 }], gift: true, note: null };
    const { id } = await client.submitJob({
      request: { method: "POST", url: targetUrl, json: order },
      tags: ["example"],
    });
    console.log(`submitted ${id}`);

    // Watching by id ends once the job has finished.
    for await (const event of client.watchJobs({ ids: [id], snapshot: true })) {
      console.log(`status ${JobStatus[event.status]}`);
    }

    const result = await client.getJobResult(id);
    const response = result.finalAttempt?.response;
    console.log(`result ${JobStatus[result.status]} after ${result.attempts.length} attempt(s), HTTP ${response?.statusCode}`);
    // A JSON response body is a plain object already.
    console.log(`body ${JSON.stringify(response?.json)}`);
  } finally {
    client.close();
  }
}

const [address, targetUrl] = process.argv.slice(2);
if (!address || !targetUrl) {
  console.error("usage: submit-watch-result ADDRESS TARGET_URL");
  process.exit(2);
}
main(address, targetUrl).catch((error: unknown) => {
  console.error(String(error));
  process.exit(1);
});
