// A client of the sidecar in another language: Node's built-in http module over the Unix socket.
// Usage: node client.mjs SOCKET_PATH. Exits non-zero (with the failed assertion) when an answer is not as described.
import http from "node:http";
import assert from "node:assert/strict";

const socketPath = process.argv[2];

function call(method, path, body, contentType) {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { "Content-Type": contentType, "Content-Length": Buffer.byteLength(body) };
    const request = http.request({ socketPath, method, path, headers }, (response) => {
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode, headers: response.headers,
                                         body: Buffer.concat(chunks).toString("utf8") }));
    });
    request.on("error", reject);
    if (body !== undefined) request.write(body);
    request.end();
  });
}

const json = (value) => JSON.stringify(value);
const key = encodeURIComponent("node:user/1");

let answer = await call("PUT", `/v1/keys/${key}?ttl=60`, json({ name: "Ada" }), "application/json");
assert.equal(answer.status, 204);
answer = await call("GET", `/v1/keys/${key}`);
assert.equal(answer.status, 200);
assert.equal(answer.headers["content-type"], "application/json");
assert.deepEqual(JSON.parse(answer.body), { name: "Ada" });
assert.ok(Number(answer.headers["x-cache-ttl"]) > 50);
assert.equal((await call("HEAD", `/v1/keys/${key}`)).status, 200);
answer = await call("GET", "/v1/keys/node%3Aabsent");
assert.equal(answer.status, 404);
assert.equal(JSON.parse(answer.body).error, "miss");

answer = await call("POST", "/v1/batch/set", json({ items: { "node:a": 1, "node:b": { $base64: "AAE=", content_type: "application/octet-stream" } }, ttl: 60 }), "application/json");
assert.equal(answer.status, 204);
answer = await call("POST", "/v1/batch/get", json({ keys: ["node:a", "node:b", "node:c"] }), "application/json");
assert.equal(answer.status, 200);
assert.deepEqual(JSON.parse(answer.body).values,
                 { "node:a": 1, "node:b": { $base64: "AAE=", content_type: "application/octet-stream" }, "node:c": null });
answer = await call("POST", "/v1/batch/delete", json({ keys: ["node:a", "node:c"] }), "application/json");
assert.deepEqual(JSON.parse(answer.body), { deleted: 1 });

answer = await call("POST", `/v1/keys/${key}/lock?ttl=10`);
assert.equal(answer.status, 200);
const token = JSON.parse(answer.body).token;
answer = await call("POST", `/v1/keys/${key}/lock?ttl=10`);
assert.equal(answer.status, 409);
assert.equal(JSON.parse(answer.body).error, "locked");
assert.equal((await call("DELETE", `/v1/keys/${key}/lock?token=wrong`)).status, 409);
assert.equal((await call("DELETE", `/v1/keys/${key}/lock?token=${encodeURIComponent(token)}`)).status, 204);
assert.equal((await call("DELETE", `/v1/keys/${key}`)).status, 204);

answer = await call("PUT", "/v1/keys/bad%01key", "v", "text/plain");
assert.equal(answer.status, 400);
assert.equal(JSON.parse(answer.body).error, "bad_key");
console.log("node client: set, get, head, batch, lock: ok");
