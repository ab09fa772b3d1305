// The real OpenFeature client (@openfeature/server-sdk + @openfeature/ofrep-provider, and the
// provider's own OFREP API client for bulk evaluation) against the real gonfalon binary on
// port 0 over loopback. Run by ctest: node --test tests/e2e/node/ofrep.test.js
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');
const { OFREPApi } = require('@openfeature/ofrep-core');

const { startServer, withDeadline } = require('./gonfalon_server.js');

const ADMIN = 'gfa_ofrep_e2e_admin_token_0123456789';
let server, base, serverKey, clientKey, dataDir, admin;

before(async () => {
  ({ server, base, dataDir, admin } = await startServer(ADMIN, 'gonfalon-ofrep-'));
  await admin('POST', '/api/v1/projects', { key: 'shop', environments: ['production'] });
  await admin('POST', '/api/v1/projects/shop/flags', { key: 'checkout', variations: [false, true] });
  await admin('POST', '/api/v1/projects/shop/flags', {
    key: 'banner', variations: ['hello', 'bonjour'], clientSideAvailability: { usingEnvironmentId: true },
  });
  await admin('POST', '/api/v1/projects/shop/flags', { key: 'max-items', variations: [10, 25.5] });
  await admin('POST', '/api/v1/projects/shop/flags', { key: 'theme', variations: [{ color: 'blue' }, { color: 'red' }] });
  await admin('PATCH', '/api/v1/projects/shop/environments/production/flags/checkout', {
    on: true, fallthrough: { variation: 0 },
    rules: [{ id: 'fr', variation: 1, clauses: [{ contextKind: 'user', attribute: 'country', op: 'in', values: ['FR'] }] }],
  });
  for (const f of ['banner', 'max-items', 'theme']) {
    await admin('PATCH', `/api/v1/projects/shop/environments/production/flags/${f}`, { on: true, fallthrough: { variation: 1 } });
  }
  serverKey = (await admin('POST', '/api/v1/keys', { kind: 'server', project: 'shop', environment: 'production' })).secret;
  clientKey = (await admin('POST', '/api/v1/keys', { kind: 'client', project: 'shop', environment: 'production' })).secret;
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: base, headers: [['Authorization', `Bearer ${serverKey}`]] }));
});

after(async () => {
  await OpenFeature.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.on('exit', resolve));
    server.kill('SIGTERM');
    const code = await withDeadline(exited, 10000, 'server exit');
    assert.strictEqual(code, 0);
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
});

test('single-flag evaluation of every type through the OpenFeature client', async () => {
  const client = OpenFeature.getClient();
  const fr = await client.getBooleanDetails('checkout', false, { targetingKey: 'u1', country: 'FR' });
  assert.strictEqual(fr.value, true);
  assert.strictEqual(fr.reason, 'TARGETING_MATCH');
  assert.strictEqual(fr.variant, '1');
  const other = await client.getBooleanDetails('checkout', true, { targetingKey: 'u2', country: 'DE' });
  assert.strictEqual(other.value, false);
  assert.strictEqual(other.reason, 'DEFAULT');
  assert.strictEqual(await client.getStringValue('banner', 'x', { targetingKey: 'u1' }), 'bonjour');
  assert.strictEqual(await client.getNumberValue('max-items', 0, { targetingKey: 'u1' }), 25.5);
  assert.deepStrictEqual(await client.getObjectValue('theme', {}, { targetingKey: 'u1' }), { color: 'red' });
  const multi = await client.getBooleanValue('checkout', false,
    { kind: 'multi', user: { key: 'u9', country: 'FR' }, org: { key: 'acme' } });
  assert.strictEqual(multi, true);
});

test('errors come back as OpenFeature error codes with the default value', async () => {
  const client = OpenFeature.getClient();
  const missing = await client.getBooleanDetails('no-such-flag', true, { targetingKey: 'u1' });
  assert.strictEqual(missing.value, true);
  assert.strictEqual(missing.errorCode, 'FLAG_NOT_FOUND');
  const wrongType = await client.getNumberDetails('banner', 7, { targetingKey: 'u1' });
  assert.strictEqual(wrongType.value, 7);
  assert.strictEqual(wrongType.errorCode, 'TYPE_MISMATCH');
  const noKey = await client.getBooleanDetails('checkout', true, { country: 'FR' });
  assert.strictEqual(noKey.value, true);
  assert.strictEqual(noKey.errorCode, 'TARGETING_KEY_MISSING');
});

test('bulk evaluation with ETag/304 and the refetchEvaluation stream', async () => {
  const api = new OFREPApi(base);
  const headers = { headers: [['Authorization', `Bearer ${clientKey}`]] };
  const first = await api.postBulkEvaluateFlags({ context: { targetingKey: 'u1' } }, headers);
  assert.strictEqual(first.httpStatus, 200);
  const keys = first.value.flags.map((f) => f.key);
  assert.deepStrictEqual(keys, ['banner']);  // the client-side key sees client-side flags only
  const etag = first.httpResponse.headers.get('etag');
  assert.ok(etag);
  const again = await api.postBulkEvaluateFlags({ context: { targetingKey: 'u1' } },
    { headers: [['Authorization', `Bearer ${clientKey}`], ['If-None-Match', etag]] });
  assert.strictEqual(again.httpStatus, 304);

  const stream = first.value.eventStreams[0];
  assert.strictEqual(stream.type, 'sse');
  const controller = new AbortController();
  const res = await fetch(stream.url, { signal: controller.signal, headers: { Accept: 'text/event-stream' } });
  assert.strictEqual(res.status, 200);
  assert.match(res.headers.get('content-type'), /text\/event-stream/);
  const reader = res.body.getReader();
  const refetch = (async () => {
    let text = '';
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('stream ended');
      text += decoder.decode(value, { stream: true });
      const m = text.match(/data: (\{"type":"refetchEvaluation"[^\n]*)\n/);
      if (m) return JSON.parse(m[1]);
    }
  })();
  await admin('PATCH', '/api/v1/projects/shop/environments/production/flags/banner', { fallthrough: { variation: 0 } });
  const event = await withDeadline(refetch, 5000, 'refetchEvaluation event');
  controller.abort();
  assert.strictEqual(event.type, 'refetchEvaluation');
  const after = await api.postBulkEvaluateFlags({ context: { targetingKey: 'u1' } },
    { headers: [['Authorization', `Bearer ${clientKey}`], ['If-None-Match', etag]] });
  assert.strictEqual(after.httpStatus, 200);
  assert.strictEqual(after.value.flags[0].value, 'hello');
});

// A small seeded generator (mulberry32), so that the simulated conversions are the same on
// every run.
function seeded(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('an experiment evaluated through the OpenFeature provider gets results: exposures counted by the server', async () => {
  await admin('POST', '/api/v1/projects/shop/flags', { key: 'exp-checkout', variations: [false, true] });
  await admin('PATCH', '/api/v1/projects/shop/environments/production/flags/exp-checkout', {
    on: true,
    fallthrough: { variation: null, rollout: { kind: 'experiment', seed: 21, variations: [{ variation: 0, weight: 50000 }, { variation: 1, weight: 50000 }] } },
  });
  await admin('PUT', '/api/v1/projects/shop/metrics/signup', { eventKey: 'signup', kind: 'conversion' });
  await admin('POST', '/api/v1/projects/shop/environments/production/flags/exp-checkout/experiment',
    { action: 'start', metrics: ['signup'], weights: [1, 1] });
  const client = OpenFeature.getClient();
  const random = seeded(7);
  const served = [0, 0];
  const signups = [];
  for (let i = 0; i < 4000; i++) {
    const user = `node-user-${i}`;
    const d = await client.getBooleanDetails('exp-checkout', false, { targetingKey: user });
    const v = d.value ? 1 : 0;
    served[v]++;
    // The treatment converts at 20 %, control at 10 %.
    if (random() < (v === 1 ? 0.20 : 0.10)) signups.push({ event: 'signup', units: { user }, time: Date.now() + 1000 });
  }
  // The application reports conversions the way any language can: POST /sdk/v1/events. The
  // server writes the exposures it recorded before it joins these events to them.
  const r = await fetch(`${base}/sdk/v1/events`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${serverKey}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ batchId: 'node-signups', metrics: signups }),
  });
  assert.strictEqual(r.status, 202, await r.text());
  let results;
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    results = await admin('GET', '/api/v1/projects/shop/environments/production/flags/exp-checkout/experiment/results');
    if (results.units[0] + results.units[1] === 4000) break;
    await new Promise((resolve) => setTimeout(resolve, 100));  // polling the condition
  }
  assert.deepStrictEqual(results.units, served);
  const treatment = results.metrics[0].variations[1];
  assert.ok(treatment.differenceInterval[0] < 0.10 && treatment.differenceInterval[1] > 0.10,
    `interval ${JSON.stringify(treatment.differenceInterval)} should cover the true lift of 0.10`);
  assert.ok(treatment.chanceToBeatControl > 0.99);
});
