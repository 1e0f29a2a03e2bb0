// Reads {"secret": "...", "payloads": ["...", ...]} on stdin and prints a JSON array
// of the signatures @octokit/webhooks-methods' sign() makes for each payload.
import { sign } from "@octokit/webhooks-methods";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { secret, payloads } = JSON.parse(input);
const signatures = [];
for (const payload of payloads) signatures.push(await sign(secret, payload));
process.stdout.write(JSON.stringify(signatures));
