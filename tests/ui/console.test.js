// The web console in a real browser (issue 14): playwright-core drives Debian's chromium
// (headless) against the real gonfalon binary on port 0. Each flow asserts on what the page
// shows and checks the server through the API; screenshots go to $CONSOLE_ARTIFACTS; axe-core
// must find no serious or critical violation; the budgets (first load ≤ 250 KB, 10,000 flags
// interactive < 500 ms, a toggle in the list < 200 ms) are measured and printed.
// Run by ctest: node --test tests/ui/console.test.js
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const { startServer } = require('../e2e/node/gonfalon_server.js');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.CONSOLE_ARTIFACTS || fs.mkdtempSync(path.join(os.tmpdir(), 'gonfalon-console-shots-'));
const ADMIN = 'gfa_console_e2e_admin_token_0123456789';
const AXE = require.resolve('axe-core/axe.min.js');
let server, base, dataDir, browser, api;
const figures = {};

// A tab signed in to the console; `bypassCSP` only for the accessibility check's injected script.
async function signedIn({ bypassCSP = false, token = ADMIN } = {}) {
  const context = await browser.newContext({ bypassCSP, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(`${base}/ui/`);
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: /^Flags/ }).waitFor();
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: false });
}

async function axe(page, what) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepStrictEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`), [], `axe on ${what}`);
}

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: scripts/install-deps installs Debian's chromium`);
  ({ server, base, dataDir, admin: api } = await startServer(ADMIN, 'gonfalon-console-'));
  server.stdout.resume();
  await api('POST', '/api/v1/projects', { key: 'shop', environments: ['production', 'staging'] });
  await api('POST', '/api/v1/projects/shop/flags', { key: 'checkout', name: 'New checkout', variations: [false, true], tags: ['payments'] });
  await api('POST', '/api/v1/projects/shop/flags', { key: 'banner', variations: ['hello', 'bonjour'] });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.kill('SIGKILL');
  fs.rmSync(dataDir, { recursive: true, force: true });
  console.log(`console figures: ${JSON.stringify(figures)}; screenshots in ${ARTIFACTS}`);
});

test('a wrong token is refused and the right one signs in; the page is within budget and accessible', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  let transferred = 0;
  page.on('response', async (r) => {
    const len = Number((await r.allHeaders())['content-length'] || 0);
    if (r.url().startsWith(`${base}/ui/`)) transferred += len;
  });
  await page.goto(`${base}/ui/`);
  await page.getByLabel('Admin token').fill('gfa_wrong_token_000000000000');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
  await shot(page, 'signin');
  figures.firstLoadBytes = transferred;
  assert.ok(transferred > 0 && transferred <= 250 * 1024, `first load ${transferred} bytes (budget 250 KB)`);
  await page.getByLabel('Admin token').fill(ADMIN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: /^Flags/ }).waitFor();
  // The token stays out of the URL and in this tab's session storage.
  assert.ok(!page.url().includes(ADMIN));
  assert.strictEqual(await page.evaluate(() => sessionStorage.getItem('gonfalon.token')), ADMIN);
  const csp = (await (await fetch(`${base}/ui/`)).headers.get('content-security-policy')) || '';
  assert.match(csp, /script-src 'self'/);
  await context.close();
  const checked = await signedIn({ bypassCSP: true });
  await axe(checked, 'the flags list');
  await checked.context().close();
});

test('a toggle in the list reaches the server, shows in the list at once, and appears in history', async () => {
  const page = await signedIn();
  const toggle = page.getByRole('switch', { name: 'checkout off' });
  await toggle.waitFor();
  await shot(page, 'flags');
  const started = Date.now();
  await toggle.click();
  await page.getByRole('switch', { name: 'checkout on' }).waitFor();
  figures.toggleMs = Date.now() - started;
  const flag = await api('GET', '/api/v1/projects/shop/environments/production/flags/checkout');
  assert.strictEqual(flag.on, true);
  // Search narrows the list.
  await page.getByLabel('Search').fill('bann');
  await page.getByText('1 of 2').waitFor();
  assert.strictEqual(await page.getByRole('row').count(), 1);
  // History names the change, who made it and its fields; a restore shows its diff first.
  await page.getByRole('link', { name: 'History' }).click();
  await page.getByRole('heading', { name: 'History' }).waitFor();
  const change = page.getByRole('listitem', { name: /^change set / }).first();
  await change.getByText(/flag checkout changed/).waitFor();
  assert.match(await change.getByRole('table').first().textContent(), /onfalsetrue/);
  await shot(page, 'history');
  await change.getByRole('button', { name: /^Restore checkout to before/ }).click();
  const preview = page.getByRole('group', { name: 'restore checkout' });
  assert.match(await preview.getByRole('table').textContent(), /ontruefalse/);  // now → then
  await preview.getByRole('button', { name: 'Restore', exact: true }).click();
  await page.getByRole('status').filter({ hasText: /checkout restored as change set #\d+/ }).waitFor();
  assert.strictEqual((await api('GET', '/api/v1/projects/shop/environments/production/flags/checkout')).on, false);
  await api('PATCH', '/api/v1/projects/shop/environments/production/flags/checkout', { on: true });  // back on, for what follows
  // The flag's own page.
  await page.goto(`${base}/ui/#/p/shop/e/production/flags/checkout`);
  await page.getByRole('heading', { name: /New checkout/ }).waitFor();
  assert.strictEqual(await page.getByRole('switch').getAttribute('aria-checked'), 'true');
  await shot(page, 'flag');
  await page.context().close();
});

test('a rule with a segment and a 10 % rollout, reviewed as a diff and saved with a comment', async () => {
  await api('POST', '/api/v1/projects/shop/environments/production/segments', { key: 'beta', included: ['ada'] });
  const page = await signedIn({ bypassCSP: true });
  await page.goto(`${base}/ui/#/p/shop/e/production/flags/checkout`);
  await page.getByRole('heading', { name: 'Targeting in production' }).waitFor();
  const form = page.getByRole('form', { name: 'New rule' });
  await form.getByLabel('Operator', { exact: true }).selectOption('segmentMatch');
  await form.getByLabel('Segment', { exact: true }).selectOption('beta');
  await form.getByLabel('Serve', { exact: true }).selectOption('1');
  await form.getByRole('button', { name: 'Add rule' }).click();
  await page.getByText('If in segment beta → serve 1: true').waitFor();
  await page.getByLabel('A percentage rollout').check();
  await page.getByLabel('share of variation 1, percent').fill('10');
  await page.getByLabel('share of variation 1, percent').press('Tab');
  assert.strictEqual(await page.getByLabel('share of variation 0, percent').inputValue(), '90');  // always 100 % in all
  await page.getByText('Total: 100%').waitFor();
  await page.getByRole('button', { name: /^Review \d+ changes?…$/ }).click();
  const review = page.getByRole('group', { name: 'Review the change' });
  assert.match(await review.getByRole('table').textContent(), /segmentMatch/);
  await review.getByLabel('Comment').fill('beta testers and 10 %');
  await shot(page, 'targeting');
  await axe(page, 'the flag page');
  await review.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('heading', { name: /version \d+/ }).waitFor();
  await page.getByRole('button', { name: /^Review/ }).waitFor({ state: 'detached' });
  const flag = await api('GET', '/api/v1/projects/shop/environments/production/flags/checkout');
  assert.deepStrictEqual(flag.rules[0].clauses[0].values, ['beta']);
  assert.strictEqual(flag.rules[0].clauses[0].op, 'segmentMatch');
  assert.strictEqual(flag.rules[0].variation, 1);
  assert.deepStrictEqual(flag.fallthrough.rollout.variations.map((w) => w.weight), [90000, 10000]);
  const last = (await api('GET', '/api/v1/projects/shop/environments/production/history?limit=1')).items[0];
  assert.strictEqual(last.comment, 'beta testers and 10 %');
  await page.context().close();
});

test('a release plan shows its stages and guards, and pauses from the console', async () => {
  await api('PUT', '/api/v1/projects/shop/metrics/errors', { eventKey: 'error.banner', kind: 'conversion', successCriteria: 'lower' });
  await api('PATCH', '/api/v1/projects/shop/environments/staging/flags/banner', { on: true, fallthrough: { variation: 0 } });
  await api('POST', '/api/v1/projects/shop/environments/staging/flags/banner/release-plan', {
    controlVariation: 0, treatmentVariation: 1,
    stages: [{ weight: 10000, minDurationMs: 3600000 }, { weight: 50000, minDurationMs: 3600000 }, { weight: 100000 }],
    guards: [{ kind: 'metric', metric: 'errors', action: 'rollback' }],
  });
  const page = await signedIn();
  await page.goto(`${base}/ui/#/p/shop/e/staging/flags/banner`);
  const stages = page.getByRole('list', { name: 'Stages' });
  await stages.waitFor();
  assert.strictEqual(await stages.getByRole('listitem').count(), 3);
  assert.match(await stages.locator('[aria-current=step]').textContent(), /^10%/);
  await page.getByText(/metric on errors → rollback: pass/).waitFor();  // judged by the server within a second
  await shot(page, 'release-plan');
  await page.getByRole('button', { name: 'Pause' }).click();
  await page.getByRole('heading', { name: /Release plan .* paused/ }).waitFor();
  assert.strictEqual((await api('GET', '/api/v1/projects/shop/environments/staging/flags/banner/release-plan')).status, 'paused');
  await page.context().close();
});

test('two tabs: the second toggle of the same flag is told someone changed it', async () => {
  const a = await signedIn();
  const b = await signedIn();
  await a.getByRole('switch', { name: /^banner / }).click();
  await a.getByRole('switch', { name: 'banner on' }).waitFor();
  await b.getByRole('switch', { name: 'banner off' }).click();  // tab b still shows the old version
  await b.getByRole('alert').filter({ hasText: 'Someone changed banner meanwhile' }).waitFor();
  await b.getByRole('switch', { name: 'banner on' }).waitFor();  // and now shows theirs
  assert.strictEqual((await api('GET', '/api/v1/projects/shop/environments/production/flags/banner')).on, true);
  await shot(b, 'conflict');
  await a.context().close();
  await b.context().close();
});

test('evaluate a context and read the trace: which rule matched and which clause did not', async () => {
  await api('PATCH', '/api/v1/projects/shop/environments/production/flags/banner', {
    on: true, fallthrough: { variation: 0 },
    rules: [
      { id: 'eu', variation: 1, clauses: [{ contextKind: 'user', attribute: 'country', op: 'in', values: ['FR', 'DE'] }] },
      { id: 'staff', variation: 1, clauses: [{ contextKind: 'user', attribute: 'email', op: 'endsWith', values: ['@example.com'] }] },
    ],
  });
  const page = await signedIn({ bypassCSP: true });
  await page.getByRole('link', { name: 'Evaluate' }).click();
  await page.getByLabel('Flag').selectOption('banner');
  await page.getByLabel('Context (JSON)').fill('{"kind":"user","key":"carol","email":"carol@example.com","country":"US"}');
  await page.getByRole('button', { name: 'Evaluate' }).click();
  const result = page.getByRole('region', { name: 'Result' });
  await result.getByText('RULE_MATCH').waitFor();
  assert.match(await result.textContent(), /banner → "bonjour" \(variation 1\)/);
  const steps = page.getByRole('list', { name: 'What was tried' }).locator(':scope > li');
  assert.strictEqual(await steps.count(), 2);  // no targets: the two rules, the second matched
  assert.match(await steps.nth(0).textContent(), /Rule 1 \(eu\) — no match/);
  assert.match(await steps.nth(0).textContent(), /read "US"\)did not match/);
  assert.match(await steps.nth(1).textContent(), /Rule 2 \(staff\) — matched/);
  await shot(page, 'evaluate');
  await axe(page, 'the Evaluate page');
  // A context that is not JSON is said so, and nothing is asked of the server.
  await page.getByLabel('Context (JSON)').fill('{kind: user');
  await page.getByRole('button', { name: 'Evaluate' }).click();
  await page.getByRole('alert').filter({ hasText: 'not JSON' }).waitFor();
  await page.context().close();
});

test('a read-only token sees the flags but cannot switch them', async () => {
  const reader = (await api('POST', '/api/v1/keys', { kind: 'admin', scope: 'read', name: 'auditor' })).secret;
  const page = await signedIn({ token: reader });
  await page.getByRole('status').filter({ hasText: 'can read but not change' }).waitFor();
  assert.ok(await page.getByRole('switch', { name: /^checkout / }).isDisabled());
  await page.context().close();
});

test('a change request opened through the API is approved by another person in the console', async () => {
  await api('PATCH', '/api/v1/projects/shop/environments/staging', { approvals: { requiredApprovals: 1 } });
  const opened = await fetch(`${base}/api/v1/projects/shop/environments/staging/flags/checkout?comment=launch`, {
    method: 'PATCH', headers: { Authorization: `Bearer ${ADMIN}` }, body: JSON.stringify({ on: true }),
  });
  assert.strictEqual(opened.status, 202);
  const id = (await opened.json()).id;
  const bob = (await api('POST', '/api/v1/keys', { kind: 'admin', name: 'bob' })).secret;
  const page = await signedIn({ token: bob });
  await page.goto(`${base}/ui/#/p/shop/e/staging/requests`);
  const card = page.getByRole('listitem', { name: `change request ${id}` });
  await card.waitFor();
  await shot(page, 'change-requests');
  await card.getByRole('button', { name: 'Approve' }).click();
  await page.getByRole('status').filter({ hasText: `${id}: applied` }).waitFor();
  assert.strictEqual((await api('GET', '/api/v1/projects/shop/environments/staging/flags/checkout')).on, true);
  assert.strictEqual((await api('GET', `/api/v1/projects/shop/environments/staging/change-requests/${id}`)).status, 'applied');
  await page.context().close();
});

test('10,000 flags: the list is interactive quickly and only draws what is visible', async () => {
  for (let batch = 0; batch < 10; ++batch) {
    const flags = [];
    for (let i = 0; i < 1000; ++i) flags.push({ key: `bulk-${String(batch * 1000 + i).padStart(5, '0')}`, variations: [false, true] });
    await api('POST', '/api/v1/projects/shop/flags', { flags });
  }
  const page = await signedIn();
  const started = Date.now();
  await page.reload();
  await page.getByText('10002', { exact: true }).waitFor();
  await page.getByRole('switch', { name: 'banner on' }).waitFor();
  figures.tenThousandFlagsMs = Date.now() - started;
  const rows = await page.getByRole('row').count();
  assert.ok(rows < 100, `${rows} rows drawn for 10,002 flags`);
  await page.getByLabel('Search').fill('bulk-09999');
  await page.getByRole('switch', { name: 'bulk-09999 off' }).waitFor();
  await shot(page, 'many-flags');
  // A narrow screen still works.
  await page.setViewportSize({ width: 390, height: 800 });
  await page.getByRole('switch', { name: 'bulk-09999 off' }).click();
  await page.getByRole('switch', { name: 'bulk-09999 on' }).waitFor();
  await shot(page, 'narrow');
  await page.context().close();
});
