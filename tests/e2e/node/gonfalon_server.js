// The real gonfalon binary for the node tests (the OFREP client's here, the console's in
// tests/ui): started on port 0 over loopback with an admin token, on a fresh data directory.
'use strict';
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function withDeadline(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); }),
  ]);
}

// Starts $GONFALON_BINARY; resolves to {server, base, dataDir, admin(method, path, body)}, where
// admin() calls the API with `token` and asserts a 2xx answer.
async function startServer(token, prefix) {
  const binary = process.env.GONFALON_BINARY;
  assert.ok(binary, 'GONFALON_BINARY must point at the gonfalon binary');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const server = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env: { ...process.env, GONFALON_ADMIN_TOKEN: token },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await withDeadline(new Promise((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+) /);
      if (m) resolve(Number(m[1]));
    });
    server.on('exit', (code) => reject(new Error(`server exited ${code}: ${out}`)));
  }), 20000, 'server start');
  const base = `http://127.0.0.1:${port}`;
  const admin = async (method, p, body) => {
    const r = await fetch(base + p, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    assert.ok(r.status < 300, `${method} ${p} -> ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  return { server, base, dataDir, admin };
}

module.exports = { withDeadline, startServer };
