// The targeting editor of one flag in one environment: rules built from clauses (attribute,
// operator, values, or a segment), what everyone else gets (a variation or a percentage
// rollout whose shares always add up to 100 %), then a diff of the change and a comment
// before it is saved with If-Match (a 412 says someone else changed it, and shows theirs).
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { call, enc, envPath, get } from './api.js';
import { diff } from './history.js';

const html = htm.bind(h);
const OPERATORS = ['in', 'startsWith', 'endsWith', 'contains', 'matches', 'lessThan', 'lessThanOrEqual', 'greaterThan',
  'greaterThanOrEqual', 'before', 'after', 'semVerEqual', 'semVerLessThan', 'semVerGreaterThan', 'segmentMatch'];
const NUMERIC = new Set(['lessThan', 'lessThanOrEqual', 'greaterThan', 'greaterThanOrEqual']);
const label = (f, i) => `${i}: ${JSON.stringify(f.variations[i])}`;

// Shares in thousandths of a percent; changing one moves the last (or, for the last, the first)
// so that they always add up to 100000.
export function rebalance(weights, index, value) {
  const w = weights.slice();
  const v = Math.max(0, Math.min(100000, Math.round(value)));
  w[index] = v;
  const other = index === w.length - 1 ? 0 : w.length - 1;
  const rest = w.reduce((s, x, i) => (i === other ? s : s + x), 0);
  w[other] = 100000 - rest;
  if (w[other] < 0) {
    w[index] += w[other];
    w[other] = 0;
  }
  return w;
}

function Rollout({ flag, weights, onChange }) {
  return html`<fieldset class="rollout"><legend>Percentage rollout</legend>
    ${weights.map((w, i) => html`<label class="share">${label(flag, i)}
      <input type="number" min="0" max="100" step="0.001" value=${w / 1000}
        aria-label=${`share of variation ${i}, percent`} onChange=${(e) => onChange(rebalance(weights, i, Number(e.target.value) * 1000))} />%</label>`)}
    <p class="sum">Total: ${weights.reduce((s, x) => s + x, 0) / 1000}%</p>
  </fieldset>`;
}

function NewRule({ flag, segments, onAdd }) {
  const [op, setOp] = useState('in');
  const [attribute, setAttribute] = useState('key');
  const [values, setValues] = useState('');
  const [segment, setSegment] = useState(segments[0] || '');
  const [variation, setVariation] = useState(flag.variations.length > 1 ? 1 : 0);
  const add = (ev) => {
    ev.preventDefault();
    const clause = op === 'segmentMatch'
      ? { contextKind: 'user', attribute: '', op, values: [segment] }
      : { contextKind: 'user', attribute, op, values: values.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => (NUMERIC.has(op) ? Number(s) : s)) };
    onAdd({ clauses: [clause], variation: Number(variation) });
  };
  return html`<form class="new-rule" onSubmit=${add} aria-label="New rule">
    <label>Operator <select aria-label="Operator" value=${op} onChange=${(e) => setOp(e.target.value)}>${OPERATORS.map((o) => html`<option value=${o}>${o}</option>`)}</select></label>
    ${op === 'segmentMatch'
      ? html`<label>Segment <select aria-label="Segment" value=${segment} onChange=${(e) => setSegment(e.target.value)}>${segments.map((s) => html`<option value=${s}>${s}</option>`)}</select></label>`
      : html`<label>Attribute <input aria-label="Attribute" value=${attribute} onInput=${(e) => setAttribute(e.target.value)} /></label>
        <label>Values <input aria-label="Values" value=${values} placeholder="comma-separated" onInput=${(e) => setValues(e.target.value)} /></label>`}
    <label>Serve <select aria-label="Serve" value=${variation} onChange=${(e) => setVariation(e.target.value)}>${flag.variations.map((_, i) => html`<option value=${i}>${label(flag, i)}</option>`)}</select></label>
    <button type="submit">Add rule</button>
  </form>`;
}

const describe = (c) => (c.op === 'segmentMatch' ? `in segment ${c.values.join(', ')}` : `${c.attribute} ${c.negate ? 'not ' : ''}${c.op} ${JSON.stringify(c.values)}`);

export function TargetingEditor({ project, env, flag: saved, readOnly, onSaved }) {
  const [draft, setDraft] = useState(saved);
  const [segments, setSegments] = useState([]);
  const [comment, setComment] = useState('');
  const [reviewing, setReviewing] = useState(false);
  const [error, setError] = useState('');
  useEffect(() => { setDraft(saved); setReviewing(false); }, [saved]);
  useEffect(() => { get(`${envPath(project, env)}/segments`).then((r) => setSegments((r.items || []).map((s) => s.key))).catch(() => {}); }, [project, env]);
  const ft = draft.fallthrough || {};
  const rollout = !!ft.rollout;
  const weights = rollout ? draft.variations.map((_, i) => (ft.rollout.variations.find((w) => w.variation === i) || { weight: 0 }).weight) : null;
  const set = (patch) => { setDraft({ ...draft, ...patch }); setReviewing(false); };
  const changes = diff(saved, draft);
  const save = async () => {
    setError('');
    try {
      const body = { rules: draft.rules, fallthrough: draft.fallthrough };
      const r = await call('PATCH', `${envPath(project, env)}/flags/${enc(saved.key)}?comment=${enc(comment)}`, body, { 'If-Match': `"${saved.version}"` });
      setComment('');
      onSaved(r.json);
    } catch (e) {
      if (e.status === 412) {
        setError('Someone changed this flag since you opened it: their version is shown now; make your change again.');
        onSaved(await get(`${envPath(project, env)}/flags/${enc(saved.key)}`));
      } else {
        setError(e.field ? `${e.field}: ${e.message}` : e.message);
      }
    }
  };
  return html`<section class="targeting" aria-labelledby="targeting-title">
    <h2 id="targeting-title">Targeting in ${env}</h2>
    <h3>Rules</h3>
    ${(draft.rules || []).length === 0 ? html`<p>No rules.</p>` : html`<ol class="rules">${draft.rules.map((r, i) => html`<li>
      If ${r.clauses.map(describe).join(' and ')} → serve ${r.rollout ? 'a rollout' : label(draft, r.variation)}
      ${!readOnly && html`<button class="quiet" aria-label=${`delete rule ${i + 1}`} onClick=${() => set({ rules: draft.rules.filter((_, j) => j !== i) })}>Delete</button>`}
    </li>`)}</ol>`}
    ${!readOnly && html`<${NewRule} flag=${draft} segments=${segments} onAdd=${(r) => set({ rules: [...(draft.rules || []), r] })} />`}
    <h3>Everyone else</h3>
    <div role="radiogroup" aria-label="What everyone else gets">
      <label><input type="radio" name="ft" checked=${!rollout} disabled=${readOnly}
        onChange=${() => set({ fallthrough: { variation: rollout ? ft.rollout.variations[0].variation : (ft.variation ?? 0) } })} /> One variation</label>
      <label><input type="radio" name="ft" checked=${rollout} disabled=${readOnly}
        onChange=${() => set({ fallthrough: { rollout: { variations: draft.variations.map((_, i) => ({ variation: i, weight: i === (ft.variation ?? 0) ? 100000 : 0 })) } } })} /> A percentage rollout</label>
    </div>
    ${rollout
      ? html`<${Rollout} flag=${draft} weights=${weights} onChange=${(w) => set({ fallthrough: { rollout: { ...ft.rollout, variations: w.map((weight, variation) => ({ variation, weight })) } } })} />`
      : html`<label>Serve <select value=${ft.variation ?? 0} disabled=${readOnly} onChange=${(e) => set({ fallthrough: { variation: Number(e.target.value) } })}>
          ${draft.variations.map((_, i) => html`<option value=${i}>${label(draft, i)}</option>`)}</select></label>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${!readOnly && changes.length > 0 && html`<div class="review">
      ${!reviewing && html`<button onClick=${() => setReviewing(true)}>Review ${changes.length} ${changes.length === 1 ? 'change' : 'changes'}…</button>`}
      ${reviewing && html`<div role="group" aria-label="Review the change">
        <table class="diff"><thead><tr><th scope="col">field</th><th scope="col">now</th><th scope="col">after saving</th></tr></thead>
          <tbody>${changes.map((c) => html`<tr><th scope="row"><code>${c.path}</code></th><td><code>${JSON.stringify(c.before) ?? '—'}</code></td><td><code>${JSON.stringify(c.after) ?? '—'}</code></td></tr>`)}</tbody></table>
        <label>Comment <input value=${comment} onInput=${(e) => setComment(e.target.value)} placeholder="why (kept in history)" /></label>
        <button onClick=${save}>Save</button> <button class="quiet" onClick=${() => { setDraft(saved); setReviewing(false); }}>Discard</button>
      </div>`}
    </div>`}
  </section>`;
}
