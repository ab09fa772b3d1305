// A flag's experiment results (docs/experiments.md, docs/statistics.md): the per-variation
// table, a chart of each variation's mean with its 95 % interval, a chart of the cumulative
// difference from control day by day with its always-valid band, the sample-ratio warning,
// and what to conclude in one sentence.
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { enc, envPath, get } from './api.js';

const html = htm.bind(h);
const Z95 = 1.959963984540054;
const pct = (x, digits = 1) => `${(x * 100).toFixed(digits)}%`;
const num = (x) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3));
const signed = (x, f) => `${x > 0 ? '+' : x < 0 ? '−' : ''}${f(Math.abs(x))}`;

// How a metric's values read: a rate in percent, else a number.
const fmt = (m) => (m.kind === 'conversion' ? (x) => pct(x, 2) : num);
const varName = (flag, i) => `${i} (${JSON.stringify(flag.variations[i])})`;
const excludesZero = (iv) => !!iv && (iv[0] > 0 || iv[1] < 0);

// One sentence: what the experimenter may conclude now, for the primary metric.
export function conclude(results, flag) {
  const sr = results.sampleRatio || {};
  if (sr.mismatch) {
    return `Do not trust these results: the units per variation (${results.units.join(' / ')}) do not match the configured split (sample-ratio p = ${sr.pValue.toExponential(1)}); find out why units go missing before reading anything else.`;
  }
  const primary = results.iteration.primaryMetric;
  const m = results.metrics.find((x) => x.key === primary) || results.metrics[0];
  if (!m) return 'This iteration measures no metric: add one to see results.';
  const treatments = m.variations.filter((v) => !v.control);
  const fewest = Math.min(...m.variations.map((v) => v.units));
  if (treatments.length === 0 || fewest < 100) {
    return `Too early to tell: the smallest variation has ${fewest} units; wait for a few hundred in each before reading the figures.`;
  }
  const good = (v) => (m.successCriteria === 'lower' ? v.difference < 0 : v.difference > 0);
  const rel = (v) => (v.relativeDifference !== undefined ? ` (${signed(v.relativeDifference, (x) => pct(x))} relative)` : '');
  const sure = treatments.filter((v) => excludesZero(v.sequentialInterval));
  const f = fmt(m);
  const interval = (iv) => `${signed(iv[0], f)} to ${signed(iv[1], f)}`;
  const winners = sure.filter(good).sort((a, b) => b.chanceToBeatControl - a.chanceToBeatControl);
  if (winners.length > 0) {
    const v = winners[0];
    return `Variation ${varName(flag, v.variation)} is better than control on ${m.key}: ${signed(v.difference, f)}${rel(v)}, always-valid interval ${interval(v.sequentialInterval)}; it is safe to conclude now.`;
  }
  if (sure.length > 0) {
    const v = sure[0];
    return `Variation ${varName(flag, v.variation)} is worse than control on ${m.key}: ${signed(v.difference, f)}${rel(v)}, always-valid interval ${interval(v.sequentialInterval)}; it is safe to conclude now.`;
  }
  const hinted = treatments.filter((v) => v.pValue !== undefined && v.pValue < 0.05);
  if (hinted.length > 0) {
    const v = hinted[0];
    return `Variation ${varName(flag, v.variation)} looks ${good(v) ? 'better' : 'worse'} than control on ${m.key} (${signed(v.difference, f)}, p = ${v.pValue.toFixed(3)}), but its always-valid interval still includes no difference: keep the experiment running before concluding.`;
  }
  const best = treatments.slice().sort((a, b) => b.chanceToBeatControl - a.chanceToBeatControl)[0];
  return `No difference from control on ${m.key} yet: the chance that ${varName(flag, best.variation)} beats control is ${pct(best.chanceToBeatControl, 0)}; keep it running or stop if no difference is worth waiting for.`;
}

// The mean of each variation with its 95 % interval (normal approximation), as dots and whiskers.
function MeansChart({ flag, metric }) {
  const rows = metric.variations.map((v) => {
    const half = v.units > 1 ? Z95 * v.standardDeviation / Math.sqrt(v.units) : 0;
    return { v, lo: v.mean - half, hi: v.mean + half };
  });
  const lo = Math.min(...rows.map((r) => r.lo)), hi = Math.max(...rows.map((r) => r.hi));
  const span = hi - lo || Math.abs(hi) || 1;
  const W = 560, left = 130, right = 20, rowH = 34;
  const x = (val) => left + (val - (lo - span * 0.05)) / (span * 1.1) * (W - left - right);
  const f = fmt(metric);
  const label = rows.map((r) => `${varName(flag, r.v.variation)}: ${f(r.v.mean)}, 95% interval ${f(r.lo)} to ${f(r.hi)}`).join('; ');
  return html`<figure class="chart">
    <svg role="img" aria-label=${`${metric.key} per variation: ${label}`} viewBox=${`0 0 ${W} ${rows.length * rowH + 24}`} width="100%">
      ${rows.map((r, i) => {
        const y = i * rowH + 18;
        return html`<g>
          <text x="4" y=${y + 4} font-size="12" fill="#1b1f24">${varName(flag, r.v.variation)}${r.v.control ? ' control' : ''}</text>
          <line x1=${x(r.lo)} x2=${x(r.hi)} y1=${y} y2=${y} stroke="#0a58ca" stroke-width="2" />
          <line x1=${x(r.lo)} x2=${x(r.lo)} y1=${y - 6} y2=${y + 6} stroke="#0a58ca" stroke-width="2" />
          <line x1=${x(r.hi)} x2=${x(r.hi)} y1=${y - 6} y2=${y + 6} stroke="#0a58ca" stroke-width="2" />
          <circle cx=${x(r.v.mean)} cy=${y} r="5" fill=${r.v.control ? '#57606a' : '#0a58ca'} />
          <text x=${Math.min(x(r.hi) + 6, W - 60)} y=${y - 8} font-size="11" fill="#57606a">${f(r.v.mean)}</text>
        </g>`;
      })}
      <text x=${left} y=${rows.length * rowH + 20} font-size="11" fill="#57606a">${f(lo)}</text>
      <text x=${W - right} y=${rows.length * rowH + 20} font-size="11" fill="#57606a" text-anchor="end">${f(hi)}</text>
    </svg>
    <figcaption>${metric.key}: each variation's ${metric.kind === 'conversion' ? 'rate' : 'mean'} with its 95 % interval</figcaption>
  </figure>`;
}

// Day by day, each treatment's cumulative difference from control: the line, its 95 %
// interval (dashed) and the always-valid band (shaded), with zero marked.
function LiftChart({ flag, results, metric }) {
  const days = results.daily.map((d) => ({ day: d.day, m: d.metrics.find((x) => x.key === metric.key) })).filter((d) => d.m);
  const treatments = metric.variations.filter((v) => !v.control).map((v) => v.variation);
  const points = treatments.map((t) => days.map((d, i) => ({ i, day: d.day, v: d.m.variations.find((x) => x.variation === t) }))
    .filter((p) => p.v && p.v.difference !== undefined));
  const all = points.flat();
  if (all.length === 0) return html`<p class="hint">The chart over time appears once both sides have units.</p>`;
  const values = all.flatMap((p) => [p.v.difference, ...(p.v.sequentialInterval || []), ...(p.v.differenceInterval || [])]).concat([0]);
  const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
  const W = 560, H = 200, left = 56, right = 16, top = 10, bottom = 28;
  const n = Math.max(days.length - 1, 1);
  const x = (i) => (days.length === 1 ? (left + W - right) / 2 : left + i / n * (W - left - right));
  const y = (val) => top + (hi + span * 0.05 - val) / (span * 1.1) * (H - top - bottom);
  const f = fmt(metric);
  const colors = ['#0a58ca', '#b3261e', '#1a7f37', '#9a6700'];
  const last = points.map((ps) => ps[ps.length - 1]).filter(Boolean);
  const label = last.map((p) => `${varName(flag, p.v.variation)} on ${p.day}: ${signed(p.v.difference, f)}, always-valid interval ${f(p.v.sequentialInterval[0])} to ${f(p.v.sequentialInterval[1])}`).join('; ');
  return html`<figure class="chart">
    <svg role="img" aria-label=${`Cumulative difference from control over ${days.length} days; latest ${label}`} viewBox=${`0 0 ${W} ${H}`} width="100%">
      <line x1=${left} x2=${W - right} y1=${y(0)} y2=${y(0)} stroke="#57606a" stroke-dasharray="2 3" />
      <text x=${left - 4} y=${y(0) + 4} font-size="11" fill="#57606a" text-anchor="end">0</text>
      <text x=${left - 4} y=${y(hi) + 4} font-size="11" fill="#57606a" text-anchor="end">${signed(hi, f)}</text>
      <text x=${left - 4} y=${y(lo) + 4} font-size="11" fill="#57606a" text-anchor="end">${signed(lo, f)}</text>
      ${points.map((ps, k) => {
        const c = colors[k % colors.length];
        const band = ps.length === 1
          ? html`<rect x=${x(ps[0].i) - 8} width="16" y=${y(ps[0].v.sequentialInterval[1])} height=${Math.max(1, y(ps[0].v.sequentialInterval[0]) - y(ps[0].v.sequentialInterval[1]))} fill=${c} fill-opacity="0.15" />`
          : html`<polygon fill=${c} fill-opacity="0.15" points=${[...ps.map((p) => `${x(p.i)},${y(p.v.sequentialInterval[1])}`), ...ps.slice().reverse().map((p) => `${x(p.i)},${y(p.v.sequentialInterval[0])}`)].join(' ')} />`;
        const whisker = ps.length === 1 && html`<line x1=${x(ps[0].i)} x2=${x(ps[0].i)} y1=${y(ps[0].v.differenceInterval[0])} y2=${y(ps[0].v.differenceInterval[1])} stroke=${c} stroke-dasharray="4 3" />`;
        return html`<g>${band}${whisker}
          <polyline fill="none" stroke=${c} stroke-dasharray="4 3" points=${ps.map((p) => `${x(p.i)},${y(p.v.differenceInterval[1])}`).join(' ')} />
          <polyline fill="none" stroke=${c} stroke-dasharray="4 3" points=${ps.map((p) => `${x(p.i)},${y(p.v.differenceInterval[0])}`).join(' ')} />
          <polyline fill="none" stroke=${c} stroke-width="2" points=${ps.map((p) => `${x(p.i)},${y(p.v.difference)}`).join(' ')} />
          ${ps.map((p) => html`<circle cx=${x(p.i)} cy=${y(p.v.difference)} r="3.5" fill=${c} />`)}
        </g>`;
      })}
      <text x=${left} y=${H - 8} font-size="11" fill="#57606a">${days[0].day}</text>
      ${days.length > 1 && html`<text x=${W - right} y=${H - 8} font-size="11" fill="#57606a" text-anchor="end">${days[days.length - 1].day}</text>`}
    </svg>
    <figcaption>${metric.key}: cumulative difference from control (lift) at the end of each day — line: the estimate; dashed: its 95 % interval; shaded: the always-valid interval.
      ${treatments.length > 1 ? ` Colors: ${treatments.map((t, k) => `${['blue', 'red', 'green', 'amber'][k % 4]} ${varName(flag, t)}`).join(', ')}.` : ''}</figcaption>
  </figure>`;
}

function MetricTable({ flag, metric }) {
  const f = fmt(metric);
  const iv = (a) => (a ? `${signed(a[0], f)} to ${signed(a[1], f)}` : '—');
  return html`<table class="results"><caption>${metric.key} (${metric.kind}, ${metric.successCriteria === 'lower' ? 'lower' : 'higher'} is better)${metric.definitionDeleted ? ' — metric deleted since' : ''}</caption>
    <thead><tr><th scope="col">variation</th><th scope="col">units</th><th scope="col">${metric.kind === 'conversion' ? 'rate' : 'mean'}</th>
      <th scope="col">difference (95 %)</th><th scope="col">relative (95 %)</th><th scope="col">always-valid interval</th>
      <th scope="col">p-value</th><th scope="col">chance to beat control</th><th scope="col">expected loss</th></tr></thead>
    <tbody>${metric.variations.map((v) => html`<tr class=${v.control ? 'control' : ''}>
      <th scope="row">${varName(flag, v.variation)}${v.control ? ' — control' : ''}</th><td>${v.units}</td><td>${f(v.mean)} <small>± ${f(v.units > 1 ? Z95 * v.standardDeviation / Math.sqrt(v.units) : 0)}</small></td>
      ${v.control ? html`<td colspan="6">—</td>` : html`
        <td>${v.difference !== undefined ? `${signed(v.difference, f)} (${iv(v.differenceInterval)})` : '—'}</td>
        <td>${v.relativeDifference !== undefined ? `${signed(v.relativeDifference, (x) => pct(x))} (${v.relativeInterval ? `${signed(v.relativeInterval[0], (x) => pct(x))} to ${signed(v.relativeInterval[1], (x) => pct(x))}` : '—'})` : '—'}</td>
        <td class=${excludesZero(v.sequentialInterval) ? 'sure' : ''}>${iv(v.sequentialInterval)}</td>
        <td>${v.pValue !== undefined ? v.pValue.toPrecision(2) : '—'}</td>
        <td>${v.chanceToBeatControl !== undefined ? pct(v.chanceToBeatControl) : '—'}</td>
        <td>${v.expectedLoss !== undefined ? f(v.expectedLoss) : '—'}</td>`}
    </tr>`)}</tbody></table>`;
}

export function ExperimentPage({ project, env, flag: key }) {
  const base = `${envPath(project, env)}/flags/${enc(key)}`;
  const [flag, setFlag] = useState(null);
  const [iterations, setIterations] = useState(null);
  const [chosen, setChosen] = useState(null);
  const [results, setResults] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    get(base).then(setFlag).catch((e) => setError(e.message));
    get(`${base}/experiment`).then((r) => setIterations(r.iterations || [])).catch((e) => setError(e.message));
  }, [base]);
  const iteration = chosen ?? (iterations && iterations.length ? iterations[iterations.length - 1].iteration : null);
  useEffect(() => {
    if (iteration === null) return undefined;
    const load = () => get(`${base}/experiment/results?iteration=${iteration}`).then(setResults).catch((e) => setError(e.message));
    load();
    const timer = setInterval(load, 10000);  // units keep arriving
    return () => clearInterval(timer);
  }, [base, iteration]);
  const back = html`<p><a href=${`#/p/${enc(project)}/e/${enc(env)}/flags/${enc(key)}`}>← ${key}</a></p>`;
  if (error) return html`${back}<p class="error" role="alert">${error}</p>`;
  if (!flag || !iterations) return html`<p aria-busy="true">Loading…</p>`;
  if (iterations.length === 0) return html`${back}<h1>Experiment on ${key}</h1><p>No iteration yet: switch on an experiment rollout, or start one (docs/experiments.md).</p>`;
  if (!results) return html`${back}<p aria-busy="true">Loading results…</p>`;
  const it = results.iteration;
  const sr = results.sampleRatio || {};
  return html`<article class="experiment" aria-labelledby="experiment-title">
    ${back}
    <h1 id="experiment-title">Experiment on ${flag.name || key} <small>iteration ${it.iteration} · ${it.endedAt ? `ended ${new Date(it.endedAt).toLocaleString()}` : 'running'}</small></h1>
    ${iterations.length > 1 && html`<label>Iteration <select value=${iteration} onChange=${(e) => { setResults(null); setChosen(Number(e.target.value)); }}>
      ${iterations.map((i) => html`<option value=${i.iteration}>${i.iteration}: ${new Date(i.startedAt).toLocaleDateString()}</option>`)}</select></label>`}
    <p>Started ${new Date(it.startedAt).toLocaleString()}; control ${varName(flag, it.controlVariation)}; split ${it.weights.join(' / ')}; unit: ${it.unitKind};
      units ${results.units.join(' / ')}${results.multipleExposures ? `; ${results.multipleExposures} units saw two variations and are left out` : ''}.</p>
    ${sr.mismatch && html`<p class="warning" role="alert"><strong>Sample ratio mismatch.</strong> The units per variation (${results.units.join(' / ')}) do not fit the configured split ${it.weights.join(' / ')} (χ² = ${sr.chiSquare.toFixed(1)}, p = ${sr.pValue.toExponential(1)}): something drops or reassigns units, so the figures below are not trustworthy.</p>`}
    <p class="conclusion" role="status"><strong>Conclusion:</strong> ${conclude(results, flag)}</p>
    ${results.metrics.map((m) => html`<section class="metric" aria-label=${`metric ${m.key}`}>
      <h2>${m.key}${m.key === it.primaryMetric ? html` <small>primary</small>` : ''}</h2>
      <div class="charts"><${MeansChart} flag=${flag} metric=${m} /><${LiftChart} flag=${flag} results=${results} metric=${m} /></div>
      <${MetricTable} flag=${flag} metric=${m} />
    </section>`)}
    <p class="hint">The always-valid interval may be read at any time, as often as you like; the fixed 95 % interval and p-value only once, at the sample size planned in advance (docs/statistics.md).</p>
  </article>`;
}

// On a flag's page: a link to its experiment's results when it has one.
export function ExperimentLink({ project, env, flag }) {
  const [n, setN] = useState(0);
  useEffect(() => { get(`${envPath(project, env)}/flags/${enc(flag)}/experiment`).then((r) => setN((r.iterations || []).length)).catch(() => {}); }, [project, env, flag]);
  if (!n) return null;
  return html`<p><a href=${`#/p/${enc(project)}/e/${enc(env)}/flags/${enc(flag)}/experiment`}>Experiment results</a> (${n} ${n === 1 ? 'iteration' : 'iterations'})</p>`;
}
