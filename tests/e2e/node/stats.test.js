// gonfalon::stats against an independent implementation (stdlib-js, pinned in package-lock.json)
// on a few hundred seeded random data sets: Welch's test, the sample-ratio chi-square test and
// the distributions under them must agree to 1e-6 relative. Our side runs in tests/stats_probe
// (path in STATS_PROBE), one computation per line.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { spawnSync } = require('node:child_process');
const ttest2 = require('@stdlib/stats-ttest2');
const chi2gof = require('@stdlib/stats-chi2gof');
const normalCdf = require('@stdlib/stats-base-dists-normal-cdf');
const normalQuantile = require('@stdlib/stats-base-dists-normal-quantile');
const tCdf = require('@stdlib/stats-base-dists-t-cdf');
const tQuantile = require('@stdlib/stats-base-dists-t-quantile');
const chisquareCdf = require('@stdlib/stats-base-dists-chisquare-cdf');

const PROBE = process.env.STATS_PROBE;

// A seeded generator (mulberry32), so that a failure names a data set that can be replayed.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function gaussian(r) {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

function probe(lines) {
  const out = spawnSync(PROBE, [], { input: lines.join('\n') + '\n', encoding: 'utf8' });
  assert.strictEqual(out.status, 0, out.stderr);
  return out.stdout.trim().split('\n').map((l) => l.split(' ').map(Number));
}

function close(ours, theirs, what) {
  const tolerance = 1e-6 * Math.abs(theirs) + 1e-12;
  assert.ok(Math.abs(ours - theirs) <= tolerance, `${what}: ours ${ours}, stdlib ${theirs}`);
}

function summary(xs) {
  const n = xs.length;
  const mean = xs.reduce((s, x) => s + x, 0) / n;
  const variance = xs.reduce((s, x) => s + (x - mean) * (x - mean), 0) / (n - 1);
  return [n, mean, variance];
}

test('Welch t-test: statistic, degrees of freedom, p-value and 95% interval', { skip: !PROBE }, () => {
  const r = rng(20261201);
  const cases = [];
  for (let i = 0; i < 300; i++) {
    const draw = (n, kind, a, b) => Array.from({ length: n }, () =>
      kind === 0 ? a + b * gaussian(r) : kind === 1 ? (r() < a ? 1 : 0) : Math.exp(a + b * gaussian(r)));
    const kind = i % 3;
    const n1 = 2 + Math.floor(r() * (i % 10 === 0 ? 5000 : 300));
    const n2 = 2 + Math.floor(r() * (i % 10 === 0 ? 5000 : 300));
    const p = 0.05 + 0.9 * r();
    const x = draw(n1, kind, kind === 1 ? p : r() * 10, 0.1 + r() * 3);
    const y = draw(n2, kind, kind === 1 ? p * (0.8 + 0.4 * r()) : r() * 10, 0.1 + r() * 3);
    const sx = summary(x), sy = summary(y);
    if (sx[2] === 0 && sy[2] === 0) continue;
    cases.push({ x, y, line: `welch ${sx.join(' ')} ${sy.join(' ')}` });
  }
  const ours = probe(cases.map((c) => c.line));
  cases.forEach((c, i) => {
    const theirs = ttest2(c.x, c.y);
    const [difference, , df, t, p, low, high] = ours[i];
    const what = `case ${i} (n ${c.x.length}/${c.y.length})`;
    close(difference, theirs.xmean - theirs.ymean, `${what} difference`);
    close(t, theirs.statistic, `${what} t`);
    close(df, theirs.df, `${what} df`);
    close(p, theirs.pValue, `${what} p`);
    close(low, theirs.ci[0], `${what} interval low`);
    close(high, theirs.ci[1], `${what} interval high`);
  });
  assert.ok(cases.length >= 250);
});

test('sample-ratio check: chi-square goodness of fit against the weights', { skip: !PROBE }, () => {
  const r = rng(7);
  const cases = [];
  for (let i = 0; i < 200; i++) {
    const k = 2 + Math.floor(r() * 4);
    const weights = Array.from({ length: k }, () => 1 + Math.floor(r() * 100));
    const total = weights.reduce((s, w) => s + w, 0);
    const units = 100 + Math.floor(r() * 100000);
    // Around the expected split, sometimes skewed.
    const observed = weights.map((w) => Math.max(1, Math.round(units * w / total * (1 + (i % 4 === 0 ? 0.05 : 0.005) * gaussian(r)))));
    cases.push({ observed, probabilities: weights.map((w) => w / total), line: `srm ${k} ${observed.join(' ')} ${weights.join(' ')}` });
  }
  const ours = probe(cases.map((c) => c.line));
  cases.forEach((c, i) => {
    const theirs = chi2gof(c.observed, c.probabilities);
    close(ours[i][0], theirs.statistic, `case ${i} statistic`);
    close(ours[i][1], theirs.df, `case ${i} df`);
    close(ours[i][2], theirs.pValue, `case ${i} p`);
  });
});

test('distributions: normal, Student t (fractional and huge df) and chi-square', { skip: !PROBE }, () => {
  const r = rng(42);
  const cases = [];
  for (let i = 0; i < 300; i++) {
    const x = -8 + 16 * r();
    const p = Math.pow(10, -8 * r()) * (r() < 0.5 ? 1 : -1);
    const prob = p > 0 ? p : 1 + p;  // both tails
    const df = Math.pow(10, -0.3 + 6.5 * r());
    const chi = 60 * r();
    const k = 1 + Math.floor(r() * 30);
    cases.push([`ncdf ${x}`, normalCdf(x, 0, 1)]);
    cases.push([`nquant ${prob}`, normalQuantile(prob, 0, 1)]);
    cases.push([`tcdf ${x} ${df}`, tCdf(x, df)]);
    if (prob > 1e-6 && prob < 1 - 1e-6) cases.push([`tquant ${prob} ${df}`, tQuantile(prob, df)]);
    cases.push([`chi2cdf ${chi} ${k}`, chisquareCdf(chi, k)]);
  }
  const ours = probe(cases.map((c) => c[0]));
  cases.forEach((c, i) => close(ours[i][0], c[1], c[0]));
});
