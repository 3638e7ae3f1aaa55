// A complete exchange with an LGSP hub, with nothing but Node 20 built-ins (fetch, crypto, WebSocket).
//
// The destination opens its event stream the way a browser page must (a ticket in the URL: a
// browser's WebSocket cannot send headers), the source creates a packet and uploads its content,
// then the destination hears of it, finds it in its inbox, asks `ready`, downloads it, checks its
// SHA-256 and acknowledges it. One line per step; any failure exits with status 1.
//
//   LGSP_URL=http://127.0.0.1:8080 \
//   LGSP_SOURCE_KEY=AK... LGSP_SOURCE_SECRET=... \
//   LGSP_DEST_UNIT=000.00.01.H23 LGSP_DEST_KEY=AK... LGSP_DEST_SECRET=... \
//   node --experimental-websocket lgsp-example.mjs     # Node 22 and later: no flag needed
//
// Both keys are HMAC-SHA256 keys. docs/integrator-guide.md explains every rule used here; a test
// (tests/test_examples.py) runs this file against a live hub and keeps the guide's excerpts equal to it.

import { createHash, createHmac, randomBytes } from "node:crypto";

// [start:sign]
const EMPTY_SHA256 = sha256Hex(new Uint8Array(0));

function sha256Hex(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

// RFC 3986: keep A-Z a-z 0-9 - . _ ~, write every other byte as %XX (uppercase hex).
function encodeBytes(bytes) {
  let out = "";
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    out += /^[A-Za-z0-9\-._~]$/.test(c) ? c : "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

// Percent-decode to bytes. A "+" stays "+" (not a space); a "%" not followed by two hex digits stays.
function percentDecode(text) {
  const raw = Buffer.from(text, "utf8");
  const out = [];
  for (let i = 0; i < raw.length; i++) {
    const hex = raw.subarray(i + 1, i + 3).toString("latin1");
    if (raw[i] === 0x25 && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      out.push(parseInt(hex, 16));
      i += 2;
    } else {
      out.push(raw[i]);
    }
  }
  return Uint8Array.from(out);
}

function canonicalQuery(rawQuery) {
  if (!rawQuery) return "";
  const pairs = rawQuery.split("&").map((part) => {
    const eq = part.indexOf("=");
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? "" : part.slice(eq + 1);
    return [encodeBytes(percentDecode(name)), encodeBytes(percentDecode(value))];
  });
  const order = (a, b) => (a < b ? -1 : a > b ? 1 : 0); // the encoded strings are ASCII: byte order
  pairs.sort((p, q) => order(p[0], q[0]) || order(p[1], q[1]));
  return pairs.map(([name, value]) => `${name}=${value}`).join("&");
}

// The nine lines of LGSP1, signed with HMAC-SHA256 over the secret key's UTF-8 bytes.
function signature(creds, { method, path, query, date, nonce, session = "", contentSha256 }) {
  const toSign = ["LGSP1-HMAC-SHA256", method.toUpperCase(), path, canonicalQuery(query), creds.key,
    date, nonce, session, contentSha256].join("\n");
  return "HMAC-SHA256 " + createHmac("sha256", Buffer.from(creds.secret, "utf8")).update(toSign, "utf8").digest("base64");
}

// Headers for one request. `path` and `query` are exactly what goes on the wire (no re-encoding).
function signedHeaders(creds, method, path, query, contentSha256 = EMPTY_SHA256) {
  const date = new Date().toISOString(); // "2026-12-05T09:01:02.345Z": sent and signed as is
  const nonce = randomBytes(18).toString("base64url"); // 24 characters of [A-Za-z0-9_-]
  return {
    "X-LGSP-Key": creds.key,
    "X-LGSP-Date": date,
    "X-LGSP-Nonce": nonce,
    "X-LGSP-Content-SHA256": contentSha256,
    "X-LGSP-Signature": signature(creds, { method, path, query, date, nonce, contentSha256 }),
  };
}
// [end:sign]

// [start:request]
// One signed call. JSON bodies go as application/json, content as application/octet-stream; a call
// without a body (GET, POST .../ready, POST .../cancel) sends none and signs the empty-body hash.
async function call(creds, method, pathOrUrl, { json, bytes, expect = [200, 201] } = {}) {
  const url = new URL(pathOrUrl, HUB);
  const body = json !== undefined ? Buffer.from(JSON.stringify(json), "utf8") : bytes;
  const headers = signedHeaders(creds, method, url.pathname, url.search.slice(1),
    body ? sha256Hex(body) : EMPTY_SHA256);
  if (json !== undefined) headers["Content-Type"] = "application/json";
  if (bytes !== undefined) headers["Content-Type"] = "application/octet-stream";
  headers["Accept-Language"] = "en";
  const response = await fetch(url, { method, headers, body });
  if (!expect.includes(response.status)) {
    const problem = await response.json().catch(() => ({})); // application/problem+json
    throw new Error(`${method} ${url.pathname}: ${response.status} ${problem.code ?? "?"}: ${problem.detail ?? ""}`);
  }
  return response;
}
// [end:request]

// [start:stream]
// The event stream as a browser page opens it. The page must never hold the secret key: its own
// server (here, this script) asks for a ticket with a signed POST and hands the page the `url`.
// The ticket opens one stream, once, within 30 s.
async function openStream(creds, onMessage) {
  const { url } = await (await call(creds, "POST", "/v1/events/tickets")).json();
  // ---- in the browser, with `url` from your server: ----
  const socket = new WebSocket(url);
  socket.onmessage = (event) => onMessage(JSON.parse(event.data));
  socket.onclose = (event) => { if (event.code === 4401) console.error("key revoked:", event.reason); };
  // ----
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error("the hub refused the stream (ticket used, expired or revoked)"));
  });
  return socket;
}
// [end:stream]

const HUB = need("LGSP_URL");
const source = { key: need("LGSP_SOURCE_KEY"), secret: need("LGSP_SOURCE_SECRET") };
const dest = { unit: need("LGSP_DEST_UNIT"), key: need("LGSP_DEST_KEY"), secret: need("LGSP_DEST_SECRET") };

function need(name) {
  const value = process.env[name];
  if (!value) fail("config", `environment variable ${name} is not set`);
  return value;
}

function ok(step, text) {
  console.log(`ok   ${step.padEnd(10)} ${text}`);
}

function fail(step, text) {
  console.error(`FAIL ${step.padEnd(10)} ${text}`);
  process.exit(1);
}

async function step(name, action) {
  try {
    return await action();
  } catch (error) {
    fail(name, error.message);
  }
}

// Wait for the first message matching `test` (those already received count too).
function waitFor(messages, test, seconds, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      const found = messages.find(test);
      if (found) return resolve(found);
      if (Date.now() - started > seconds * 1000) return reject(new Error(`no ${what} within ${seconds} s`));
      setTimeout(poll, 20);
    };
    poll();
  });
}

// 0. The signing code against the guide's worked example, before talking to any hub.
await step("self-test", () => {
  const example = { key: "AK_TEST_0001", secret: "s3cr3t-EXAMPLE-key" };
  const got = signature(example, { method: "GET", path: "/v1/inbox", query: "limit=10",
    date: "2026-12-05T09:01:02.345Z", nonce: "n0nce-0003", contentSha256: EMPTY_SHA256 });
  const want = "HMAC-SHA256 QJWgkROL0aktfksIi2x4eDKaMzhibi1Fu7ICAi2JEME=";
  if (got !== want) throw new Error(`worked example signs to ${got}, the guide says ${want}`);
  if (canonicalQuery("q=S%e1%bb%9f%20KH&limit=5&a+b=%zz") !== "a%2Bb=%25zz&limit=5&q=S%E1%BB%9F%20KH") {
    throw new Error("canonical query differs from the guide's rules");
  }
  ok("self-test", "the guide's worked example signs as published");
});

// 1. The destination listens, as a browser would.
const events = [];
const socket = await step("stream", async () => {
  if (typeof WebSocket === "undefined") return null; // Node 20 without --experimental-websocket
  const opened = await openStream(dest, (message) => events.push(message));
  const hello = await waitFor(events, (m) => m.type === "hello", 5, "hello");
  ok("stream", `opened with a ticket; hello for ${hello.unit}, ${hello.inbox.length} waiting`);
  return opened;
});
if (!socket) ok("stream", "skipped: this Node has no WebSocket (use --experimental-websocket)");

// 2. The source asks for a packet space, then uploads the content.
const content = Buffer.from(`Công văn thử nghiệm từ JavaScript, ${new Date().toISOString()}\n`, "utf8");
const sha256 = sha256Hex(content);
const created = await step("create", async () => {
  const response = await call(source, "POST", "/v1/packets", { json: {
    to: [dest.unit], subject: "Thử nghiệm ví dụ JavaScript", priority: 0, data_type: "binary",
    size: content.length, sha256 } });
  const answer = await response.json();
  ok("create", `packet ${answer.id} to ${dest.unit}`);
  return answer;
});
await step("upload", async () => {
  const answer = await (await call(source, "PUT", created.upload.url, { bytes: content })).json();
  if (answer.sha256 !== sha256 || answer.state !== "accepted") throw new Error(JSON.stringify(answer));
  ok("upload", `${content.length} bytes, state ${answer.state}`);
});

// 3. The destination hears of it on its stream, finds it in its inbox (page by page), fetches it.
if (socket) {
  await step("event", async () => {
    await waitFor(events, (m) => m.type === "packet.available" && m.id === created.id, 10, "packet.available");
    ok("event", `packet.available ${created.id}`);
  });
}
await step("inbox", async () => {
  let cursor = null;
  for (let page = 1; ; page++) {
    const query = "limit=10" + (cursor ? `&cursor=${cursor}` : "");
    const { items, next } = await (await call(dest, "GET", `/v1/inbox?${query}`)).json();
    const item = items.find((i) => i.id === created.id);
    if (item) {
      if (item.sha256 !== sha256 || item.size !== content.length) throw new Error(JSON.stringify(item));
      return ok("inbox", `found on page ${page}: "${item.subject}" from ${item.from}`);
    }
    if (!next) throw new Error(`packet ${created.id} is not in the inbox`);
    cursor = next;
  }
});
const download = await step("ready", async () => {
  const { download } = await (await call(dest, "POST", `/v1/packets/${created.id}/ready`)).json();
  ok("ready", `download until ${download.expires_at}`);
  return download;
});
const received = await step("download", async () => {
  const response = await call(dest, "GET", download.url);
  const bytes = Buffer.from(await response.arrayBuffer());
  const got = sha256Hex(bytes);
  if (got !== response.headers.get("X-LGSP-Content-SHA256") || got !== sha256) {
    throw new Error(`content hashes to ${got}; the hub says ${response.headers.get("X-LGSP-Content-SHA256")}`);
  }
  ok("download", `${bytes.length} bytes, SHA-256 verified ${got}`);
  return got;
});
await step("ack", async () => {
  const { state } = await (await call(dest, "POST", `/v1/packets/${created.id}/ack`, { json: { sha256: received } })).json();
  if (state !== "delivered") throw new Error(`state ${state}`);
  ok("ack", `state ${state}`);
});

// 4. The source sees the delivery.
await step("status", async () => {
  const view = await (await call(source, "GET", `/v1/packets/${created.id}`)).json();
  const states = view.deliveries.map((d) => `${d.unit} ${d.state}`).join(", ");
  if (view.deliveries.some((d) => d.state !== "delivered")) throw new Error(states);
  ok("status", `${states}; content ${view.content}`);
});
socket?.close();
