// Submits a job the service refuses, and prints what the JobqueueError carries.
//
//   node dist/test/bad-request.js ADDRESS
import { Client, Code, JobqueueError } from "../src";

async function main(address: string): Promise<void> {
  const client = new Client(address);
  try {
    await client.submitJob({ request: { method: "POST", url: "ftp://x" }, ttl: { seconds: -5 } });
    console.log("accepted");
  } catch (error) {
    if (!(error instanceof JobqueueError)) {
      throw error;
    }
    console.log(`code ${Code[error.code]}`);
    for (const { field, description } of error.fieldViolations) {
      console.log(`violation ${field}: ${description}`);
    }
    console.log(`message ${error.message}`);
  } finally {
    client.close();
  }
}

main(process.argv[2]).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
