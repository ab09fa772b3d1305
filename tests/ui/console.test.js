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

test('on a fresh server the console creates the first project', async () => {
  const fresh = await startServer(ADMIN, 'gonfalon-console-fresh-');
  fresh.server.stdout.resume();
  try {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(`${fresh.base}/ui/`);
    await page.getByLabel('Admin token').fill(ADMIN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const form = page.getByRole('form', { name: 'New project' });
    await form.getByLabel('Project key').fill('acme');
    await axe(page, 'the first-project form');
    await form.getByRole('button', { name: 'Create project' }).click();
    await page.getByRole('heading', { name: /^Flags/ }).waitFor();
    assert.deepStrictEqual((await fresh.admin('GET', '/api/v1/projects/acme/environments')).items.map((e) => e.key).sort(), ['production', 'staging']);
    assert.match(page.url(), /#\/p\/acme\/e\/production\/flags$/);
    await context.close();
  } finally {
    fresh.server.kill('SIGKILL');
    fs.rmSync(fresh.dataDir, { recursive: true, force: true });
  }
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
  // The heading shows the version before the save until the server has answered it (the
  // Review button is gone as soon as the review opens, so it cannot tell that the save is done).
  const before = Number((await page.locator('#flag-title small').textContent()).match(/version (\d+)/)[1]);
  await review.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('heading', { name: new RegExp(`version ${before + 1}$`) }).waitFor();
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
  // A write from the console in this environment waits too: the page says so and shows the
  // flag unchanged.
  await page.goto(`${base}/ui/#/p/shop/e/staging/flags/checkout`);
  await page.getByRole('heading', { name: /^New checkout/ }).waitFor();
  const before = await api('GET', '/api/v1/projects/shop/environments/staging/flags/checkout');
  await page.getByRole('switch').click();
  await page.getByRole('status').filter({ hasText: /^Waiting for approval: change request \S+ \(see Change requests\)\.$/ }).waitFor();
  assert.strictEqual(await page.getByRole('switch').getAttribute('aria-checked'), String(before.on));
  assert.strictEqual((await api('GET', '/api/v1/projects/shop/environments/staging/flags/checkout')).on, before.on);
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

test('create a flag, give it individual targets and a rule of two clauses, moved first', async () => {
  const page = await signedIn({ bypassCSP: true });
  await page.getByRole('button', { name: 'New flag' }).click();
  const form = page.getByRole('form', { name: 'New flag' });
  await form.getByLabel('Key').fill('dark-mode');
  await form.getByLabel('Name').fill('Dark mode');
  await form.getByLabel('Tags').fill('ui, theme');
  await form.getByLabel('Variations').selectOption('string');
  await form.getByLabel('One per line').fill('light\ndark');
  await axe(page, 'the new-flag form');
  await form.getByRole('button', { name: 'Create flag' }).click();
  await page.getByRole('heading', { name: /Dark mode dark-mode · version 1/ }).waitFor();
  const created = await api('GET', '/api/v1/projects/shop/flags/dark-mode');
  assert.deepStrictEqual(created.variations, ['light', 'dark']);
  assert.deepStrictEqual(created.tags, ['ui', 'theme']);
  // Individual targets, then a rule of two clauses added after a first rule and moved first.
  await page.getByLabel('users who get variation 1').fill('ada, bob');
  await page.getByLabel('users who get variation 1').press('Tab');
  const rule = page.getByRole('form', { name: 'New rule' });
  await rule.getByLabel('Attribute', { exact: true }).fill('plan');
  await rule.getByLabel('Values', { exact: true }).fill('free');
  await rule.getByLabel('Serve', { exact: true }).selectOption('0');
  await rule.getByRole('button', { name: 'Add rule' }).click();
  await rule.getByLabel('Attribute', { exact: true }).fill('country');
  await rule.getByLabel('Values', { exact: true }).fill('FR, DE');
  await rule.getByRole('button', { name: 'And another clause' }).click();
  await rule.getByText('If country in ["FR","DE"] and…').waitFor();
  await rule.getByLabel('Attribute', { exact: true }).fill('email');
  await rule.getByLabel('Operator', { exact: true }).selectOption('endsWith');
  await rule.getByLabel('Values', { exact: true }).fill('@example.com');
  await rule.getByLabel('Negate').check();
  await rule.getByLabel('Serve', { exact: true }).selectOption('1');
  await rule.getByRole('button', { name: 'Add rule' }).click();
  // A third rule serving a percentage rollout: even shares at first, then set by its slider.
  await rule.getByLabel('Attribute', { exact: true }).fill('beta');
  await rule.getByLabel('Values', { exact: true }).fill('yes');
  await rule.getByLabel('Serve', { exact: true }).selectOption('rollout');
  await rule.getByRole('button', { name: 'Add rule' }).click();
  assert.strictEqual(await page.getByLabel('Rule 3 rollout: share of variation 0, percent').inputValue(), '50');
  await page.getByLabel('Rule 3 rollout: slider for variation 1').fill('25');
  assert.strictEqual(await page.getByLabel('Rule 3 rollout: share of variation 0, percent').inputValue(), '75');
  await page.getByRole('button', { name: 'move rule 2 up' }).click();
  const rules = page.locator('ol.rules > li');
  await rules.nth(0).filter({ hasText: /country in \["FR","DE"\] and email not endsWith \["@example.com"\] → serve 1: "dark"/ }).waitFor();
  await rules.nth(1).filter({ hasText: /plan in \["free"\] → serve 0: "light"/ }).waitFor();
  await page.getByRole('button', { name: /^Review \d+ changes?…$/ }).click();
  await page.getByRole('group', { name: 'Review the change' }).getByRole('button', { name: 'Save' }).click();
  await page.getByRole('heading', { name: /version 2/ }).waitFor();
  const flag = await api('GET', '/api/v1/projects/shop/environments/production/flags/dark-mode');
  assert.deepStrictEqual(flag.targets, [{ variation: 1, values: ['ada', 'bob'] }]);
  assert.strictEqual(flag.rules.length, 3);
  assert.deepStrictEqual(flag.rules[2].rollout.variations, [{ variation: 0, weight: 75000 }, { variation: 1, weight: 25000 }]);
  assert.deepStrictEqual(flag.rules[0].clauses.map((c) => [c.attribute, c.op, c.values, !!c.negate]),
    [['country', 'in', ['FR', 'DE'], false], ['email', 'endsWith', ['@example.com'], true]]);
  assert.strictEqual(flag.rules[0].variation, 1);
  assert.strictEqual(flag.rules[1].variation, 0);
  // A bad clause is said, not sent.
  await rule.getByLabel('Operator', { exact: true }).selectOption('greaterThan');
  await rule.getByLabel('Attribute', { exact: true }).fill('age');
  await rule.getByLabel('Values', { exact: true }).fill('old');
  await rule.getByRole('button', { name: 'Add rule' }).click();
  await rule.getByRole('alert').filter({ hasText: 'compares numbers' }).waitFor();
  await page.context().close();
});

test('live: a change made elsewhere shows on the flag page, and an edit in progress is kept and warned', async () => {
  const page = await signedIn();
  await page.goto(`${base}/ui/#/p/shop/e/production/flags/dark-mode`);
  await page.getByRole('heading', { name: /Dark mode/ }).waitFor();
  assert.strictEqual(await page.getByRole('switch').getAttribute('aria-checked'), 'false');
  await api('PATCH', '/api/v1/projects/shop/environments/production/flags/dark-mode', { on: true });
  await page.getByRole('switch', { checked: true }).waitFor();  // within the 3 s look, no reload
  // Text being typed survives a refresh that lands before it is committed (it used to be
  // reset to the saved value by the re-render).
  const carol = page.getByLabel('users who get variation 0');
  await carol.fill('carol');
  const { version } = await api('PATCH', '/api/v1/projects/shop/environments/production/flags/dark-mode', { offVariation: 1 });
  await page.getByRole('heading', { name: new RegExp(`version ${version}`) }).waitFor();
  assert.strictEqual(await carol.inputValue(), 'carol');
  await carol.press('Tab');
  await page.getByRole('button', { name: 'Review 1 change…' }).waitFor();
  // A change elsewhere while the edit is in progress: warned, the edit kept, saving refused.
  await api('PATCH', '/api/v1/projects/shop/environments/production/flags/dark-mode', { fallthrough: { variation: 1 } });
  await page.getByRole('alert').filter({ hasText: 'Someone changed this flag while you were editing' }).waitFor();
  assert.strictEqual(await carol.inputValue(), 'carol');
  await page.getByRole('button', { name: /^Review/ }).click();
  await page.getByRole('group', { name: 'Review the change' }).getByRole('button', { name: 'Save' }).click();
  await page.getByRole('alert').filter({ hasText: 'Someone changed this flag since you opened it' }).waitFor();
  const flag = await api('GET', '/api/v1/projects/shop/environments/production/flags/dark-mode');
  assert.strictEqual(flag.offVariation, 1);
  assert.deepStrictEqual(flag.fallthrough, { variation: 1 });
  assert.deepStrictEqual(flag.targets, [{ variation: 1, values: ['ada', 'bob'] }]);  // carol was not saved over their change
  await page.context().close();
});

test('segments: create one, include keys, add a rule, save; the flag rule offers it', async () => {
  const page = await signedIn({ bypassCSP: true });
  await page.getByRole('link', { name: 'Segments' }).click();
  await page.getByRole('heading', { name: 'Segments in production' }).waitFor();
  await page.getByLabel('New segment key').fill('vip');
  await page.getByRole('button', { name: 'Create segment' }).click();
  await page.getByRole('heading', { name: /Segment vip version 1/ }).waitFor();
  await page.getByLabel('Included (user keys)').fill('ada, grace\nlinus');
  await page.getByLabel('Included (user keys)').press('Tab');
  await page.getByLabel('Excluded (user keys)').fill('mallory');
  await page.getByLabel('Excluded (user keys)').press('Tab');
  const rule = page.getByRole('form', { name: 'New segment rule' });
  await rule.getByLabel('Attribute', { exact: true }).fill('email');
  await rule.getByLabel('Operator', { exact: true }).selectOption('endsWith');
  await rule.getByLabel('Values', { exact: true }).fill('@vip.example');
  await rule.getByRole('button', { name: 'Add rule' }).click();
  await page.getByRole('button', { name: /^Review 3 changes…$/ }).click();
  const review = page.getByRole('group', { name: 'Review the change' });
  await review.getByRole('table').filter({ hasText: /included\[\]\["ada","grace","linus"\]/ }).waitFor();
  await review.getByLabel('Comment').fill('the VIPs');
  await axe(page, 'the segment editor');
  await shot(page, 'segment');
  await review.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved: version 2.' }).waitFor();
  const seg = await api('GET', '/api/v1/projects/shop/environments/production/segments/vip');
  assert.deepStrictEqual(seg.included, ['ada', 'grace', 'linus']);
  assert.deepStrictEqual(seg.excluded, ['mallory']);
  assert.deepStrictEqual(seg.rules.map((r) => r.clauses.map((c) => [c.attribute, c.op, c.values])), [[['email', 'endsWith', ['@vip.example']]]]);
  assert.strictEqual((await api('GET', '/api/v1/projects/shop/environments/production/history?limit=1')).items[0].comment, 'the VIPs');
  await page.getByRole('link', { name: '← Segments' }).click();
  const row = page.getByRole('row', { name: /vip/ });
  await row.filter({ hasText: /^vip3112$/ }).waitFor();  // 3 included, 1 excluded, 1 rule, version 2
  await axe(page, 'the segments list');
  await page.goto(`${base}/ui/#/p/shop/e/production/flags/dark-mode`);
  const form = page.getByRole('form', { name: 'New rule' });
  await form.getByLabel('Operator', { exact: true }).selectOption('segmentMatch');
  await form.getByLabel('Segment', { exact: true }).locator('option', { hasText: 'vip' }).waitFor({ state: 'attached' });  // the list arrives
  assert.deepStrictEqual(await form.getByLabel('Segment', { exact: true }).locator('option').allTextContents(), ['beta', 'vip']);
  await page.context().close();
});

test('a change scheduled from the flag page is listed, and canceled', async () => {
  const page = await signedIn({ bypassCSP: true });
  await page.goto(`${base}/ui/#/p/shop/e/production/flags/banner`);
  await page.getByRole('heading', { name: 'Targeting in production' }).waitFor();
  await page.getByRole('button', { name: 'delete rule 2' }).click();
  await page.getByRole('button', { name: /^Review/ }).click();
  const review = page.getByRole('group', { name: 'Review the change' });
  await review.getByLabel('Comment').fill('drop the staff rule tomorrow');
  await review.getByLabel('Apply at').fill('2030-01-15T09:30');
  await review.getByRole('button', { name: 'Schedule' }).click();
  await page.getByRole('status').filter({ hasText: /^Scheduled for .*\(sc_/ }).waitFor();
  const [scheduled] = (await api('GET', '/api/v1/projects/shop/environments/production/scheduled-changes?status=scheduled')).items;
  assert.strictEqual(scheduled.comment, 'drop the staff rule tomorrow');
  assert.strictEqual(scheduled.items[0].key, 'banner');
  assert.deepStrictEqual(scheduled.items[0].data.rules.map((r) => r.id), ['eu']);
  assert.strictEqual(new Date(scheduled.executeAtMs).getFullYear(), 2030);
  assert.strictEqual((await api('GET', '/api/v1/projects/shop/environments/production/flags/banner')).rules.length, 2);  // not yet
  await page.getByRole('link', { name: 'Scheduled' }).click();
  const card = page.getByRole('listitem', { name: `scheduled change ${scheduled.id}` });
  await card.getByText('drop the staff rule tomorrow').waitFor();
  await shot(page, 'scheduled');
  await axe(page, 'the scheduled changes');
  await card.getByRole('button', { name: 'Cancel' }).click();
  await card.getByText('canceled').waitFor();
  assert.strictEqual((await api('GET', `/api/v1/projects/shop/environments/production/scheduled-changes/${scheduled.id}`)).status, 'canceled');
  await page.context().close();
});

// Units per variation and purchases, posted as the SDKs do (POST /sdk/v1/events).
async function postExposures(sdkKey, flag, from, counts, rates) {
  const exposedUnits = [], metrics = [];
  let n = from;
  counts.forEach((count, variation) => {
    for (let i = 0; i < count; ++i, ++n) {
      exposedUnits.push({ flag, variation, unitKey: `unit-${n}` });
      if (i < Math.round(count * rates[variation])) metrics.push({ event: 'purchase', units: { user: `unit-${n}` } });
    }
  });
  for (let i = 0; i < exposedUnits.length; i += 2000) {
    const keys = new Set(exposedUnits.slice(i, i + 2000).map((u) => u.unitKey));
    const r = await fetch(`${base}/sdk/v1/events`, {
      method: 'POST', headers: { Authorization: `Bearer ${sdkKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ batchId: `console-${flag}-${from}-${i}`, exposedUnits: exposedUnits.slice(i, i + 2000), metrics: metrics.filter((m) => keys.has(m.units.user)) }),
    });
    assert.strictEqual(r.status, 202, await r.text());  // accepted, durable
  }
  return n;
}

test('experiment results: the table, the charts and the conclusion; a sample-ratio mismatch is warned', async () => {
  await api('POST', '/api/v1/projects/shop/flags', { key: 'new-checkout', name: 'New checkout flow', variations: [false, true] });
  await api('PUT', '/api/v1/projects/shop/metrics/buy', { eventKey: 'purchase', kind: 'conversion', successCriteria: 'higher' });
  await api('POST', '/api/v1/projects/shop/environments/production/flags/new-checkout/experiment', { action: 'start', controlVariation: 0, metrics: ['buy'], weights: [50, 50] });
  const sdk = (await api('POST', '/api/v1/keys', { kind: 'server', project: 'shop', environment: 'production' })).secret;
  let next = await postExposures(sdk, 'new-checkout', 0, [3000, 3000], [0.10, 0.16]);
  const page = await signedIn({ bypassCSP: true });
  await page.goto(`${base}/ui/#/p/shop/e/production/flags/new-checkout`);
  await page.getByRole('link', { name: 'Experiment results' }).click();
  await page.getByRole('heading', { name: /Experiment on New checkout flow iteration 1/ }).waitFor();
  const results = await api('GET', '/api/v1/projects/shop/environments/production/flags/new-checkout/experiment/results');
  const metric = page.getByRole('region', { name: 'metric buy' });
  const rows = metric.getByRole('table').locator('tbody tr');
  assert.match(await rows.nth(0).textContent(), /^0 \(false\) — control300010\.00%/);
  const treatment = results.metrics[0].variations[1];
  assert.match(await rows.nth(1).textContent(), new RegExp(`^1 \\(true\\)300016\\.00%.*\\+${(treatment.difference * 100).toFixed(2)}%`));
  assert.match(await rows.nth(1).textContent(), new RegExp(`${(treatment.chanceToBeatControl * 100).toFixed(1)}%`));
  // Both charts are drawn, each described for screen readers with the figures.
  const charts = metric.getByRole('img');
  assert.strictEqual(await charts.count(), 2);
  assert.match(await charts.nth(0).getAttribute('aria-label'), /0 \(false\): 10\.00%, 95% interval 8\.9\d% to 11\.0\d%/);
  assert.match(await charts.nth(1).getAttribute('aria-label'), /Cumulative difference from control over 1 days; latest 1 \(true\)/);
  assert.ok(treatment.sequentialInterval[0] > 0, 'a 6-point lift at 3,000 units per arm is sure');
  assert.match(await page.getByRole('status').textContent(), /Variation 1 \(true\) is better than control on buy: \+6\.00%.*safe to conclude now/);
  assert.strictEqual(await page.getByRole('alert').count(), 0);
  await shot(page, 'experiment');
  await axe(page, 'the experiment results');
  // Units that only reach one side: the split no longer fits 50/50.
  next = await postExposures(sdk, 'new-checkout', next, [0, 1500], [0, 0.16]);
  await page.reload();
  await page.getByRole('alert').filter({ hasText: 'Sample ratio mismatch' }).waitFor();
  assert.match(await page.getByRole('status').textContent(), /Do not trust these results: the units per variation \(3000 \/ 4500\)/);
  assert.strictEqual((await api('GET', '/api/v1/projects/shop/environments/production/flags/new-checkout/experiment/results')).sampleRatio.mismatch, true);
  await shot(page, 'experiment-srm');
  await page.context().close();
});

test('every page passes the accessibility check, and fits a 390 px screen', async () => {
  const page = await signedIn({ bypassCSP: true });
  for (const [hash, heading] of [['production/history', 'History'], ['production/requests', 'Change requests'], ['staging/flags/banner', /^banner/]]) {
    await page.goto(`${base}/ui/#/p/shop/e/${hash}`);
    await page.getByRole('heading', { name: heading }).first().waitFor();
    await axe(page, hash);
  }
  // At a phone's width no page is wider than the screen (wide tables scroll in their own box).
  await page.setViewportSize({ width: 390, height: 800 });
  for (const [hash, heading] of [['production/flags', /^Flags/], ['production/flags/dark-mode', /^Dark mode/],
    ['production/flags/new-checkout/experiment', /^Experiment on/], ['production/segments/vip', /^Segment vip/],
    ['production/schedules', /^Scheduled changes/], ['production/history', 'History'], ['production/evaluate', 'Evaluate'],
    ['staging/requests', 'Change requests'], ['staging/flags/banner', /^banner/]]) {
    await page.goto(`${base}/ui/#/p/shop/e/${hash}`);
    await page.getByRole('heading', { name: heading }).first().waitFor();
    const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
    assert.ok(scroll <= inner, `${hash} is ${scroll} px wide at ${inner} px`);
  }
  await page.context().close();
});

test('10,000 flags: the list is interactive quickly and only draws what is visible', async () => {
  for (let batch = 0; batch < 10; ++batch) {
    const flags = [];
    for (let i = 0; i < 1000; ++i) flags.push({ key: `bulk-${String(batch * 1000 + i).padStart(5, '0')}`, variations: [false, true] });
    await api('POST', '/api/v1/projects/shop/flags', { flags });
  }
  const total = (await api('GET', '/api/v1/projects/shop/flags')).items.length;
  assert.ok(total >= 10000);
  const page = await signedIn();
  const times = [];
  for (let run = 0; run < 5; ++run) {  // reload → the count and the first rows shown
    const started = Date.now();
    await page.reload();
    await page.getByText(String(total), { exact: true }).waitFor();
    await page.getByRole('switch', { name: 'banner on' }).waitFor();
    times.push(Date.now() - started);
  }
  figures.tenThousandFlagsMs = times;
  const rows = await page.getByRole('row').count();
  assert.ok(rows < 100, `${rows} rows drawn for ${total} flags`);
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
