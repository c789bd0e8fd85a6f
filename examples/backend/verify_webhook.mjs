// Receive the twi-asr backend's webhooks and check their signature (Node 20, no npm packages).
//
//   TWI_ASR_WEBHOOK_SECRET=whsec_... node examples/backend/verify_webhook.mjs     # listens on :9000
//   then submit jobs with webhook_url=http://THIS_HOST:9000/hook
//
// The secret is your user's `webhook_secret` (GET /v1/me). Each delivery is a POST of
// {"type": "job.done" | "job.failed", "job": {...}} with the header
//   X-Twi-Asr-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
// and X-Twi-Asr-Event-Id (the same on every retry of one delivery: use it to drop duplicates).
// Answer 2xx quickly; anything else (or no answer) is retried with backoff.
// Import verifySignature from this file to use it in your own server.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";

/**
 * Whether `header` (X-Twi-Asr-Signature) signs `rawBody` (the bytes as received, a Buffer or
 * string: never re-serialised JSON) with `secret`, and is at most `toleranceS` seconds old.
 */
export function verifySignature(secret, header, rawBody, toleranceS = 300, nowS = Date.now() / 1000) {
  if (!secret || !header) return false;
  let timestamp = null;
  const signatures = [];
  for (const part of header.split(",")) {
    const [name, ...rest] = part.trim().split("=");
    const value = rest.join("=");
    if (name === "t") timestamp = value;
    else if (name === "v1") signatures.push(value);
  }
  if (!timestamp || !/^\d+$/.test(timestamp) || signatures.length === 0) return false;
  if (Math.abs(nowS - Number(timestamp)) > toleranceS) return false; // a replayed old delivery
  const body = Buffer.isBuffer(rawBody) ? rawBody : Buffer.from(rawBody, "utf-8");
  const expected = createHmac("sha256", secret)
    .update(Buffer.concat([Buffer.from(`${timestamp}.`, "utf-8"), body]))
    .digest();
  return signatures.some((hex) => {
    if (!/^[0-9a-f]{64}$/i.test(hex)) return false;
    return timingSafeEqual(Buffer.from(hex, "hex"), expected); // constant time
  });
}

function serve(secret, port) {
  const seen = new Set(); // event ids already handled (keep these in your database in real life)
  createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      if (req.method !== "POST" || !verifySignature(secret, req.headers["x-twi-asr-signature"], raw)) {
        res.writeHead(401).end("bad signature\n");
        console.error(`rejected ${req.method} ${req.url}: bad or missing signature`);
        return;
      }
      const eventId = req.headers["x-twi-asr-event-id"];
      res.writeHead(204).end();
      if (seen.has(eventId)) return; // a retry of a delivery already handled
      seen.add(eventId);
      const { type, job } = JSON.parse(raw.toString("utf-8"));
      console.log(`${type} ${job.id} ${job.status}: ${job.text ?? job.error?.message ?? ""}`);
    });
  }).listen(port, () => console.error(`waiting for webhooks on :${port}`));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const secret = process.env.TWI_ASR_WEBHOOK_SECRET;
  if (!secret) {
    console.error("set TWI_ASR_WEBHOOK_SECRET to your webhook_secret (GET /v1/me)");
    process.exit(2);
  }
  serve(secret, Number(process.env.PORT || 9000));
}
