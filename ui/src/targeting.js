// The targeting editor of one flag in one environment: individual targets, rules built from
// clauses (clauses.js), reordered or deleted, what everyone else gets (a variation or a
// percentage rollout whose shares always add up to 100 %), then a diff of the change and a
// comment before it is saved with If-Match (a 412 says someone else changed it, and shows
// theirs) or scheduled (schedules.js).
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { awaitingApproval, call, enc, envPath, get } from './api.js';
import { diff } from './history.js';
import { describe, NewRuleForm } from './clauses.js';
import { Review } from './review.js';
import { ScheduleButton } from './schedules.js';
import { commaList, CommittedField } from './text.js';

const html = htm.bind(h);
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

// A slider and a number per variation; `name` tells the rollouts of a page apart.
function Rollout({ flag, weights, onChange, name = 'Percentage rollout' }) {
  const set = (i, percent) => onChange(rebalance(weights, i, Number(percent) * 1000));
  return html`<fieldset class="rollout"><legend>${name}</legend>
    ${weights.map((w, i) => html`<div class="share"><span>${label(flag, i)}</span>
      <input type="range" min="0" max="100" step="0.1" value=${w / 1000} aria-label=${`${name}: slider for variation ${i}`}
        onInput=${(e) => set(i, e.target.value)} />
      <span><${CommittedField} type="number" min="0" max="100" step="0.001" value=${String(w / 1000)}
        aria-label=${name === 'Percentage rollout' ? `share of variation ${i}, percent` : `${name}: share of variation ${i}, percent`}
        onCommit=${(text) => set(i, text)} />%</span></div>`)}
    <p class="sum">Total: ${weights.reduce((s, x) => s + x, 0) / 1000}%</p>
  </fieldset>`;
}

// Even shares that add up to 100 % (the remainder on the last).
const evenly = (n) => Array.from({ length: n }, (_, i) => (i === n - 1 ? 100000 - Math.floor(100000 / n) * (n - 1) : Math.floor(100000 / n)));
const weightsOf = (flag, rollout) => flag.variations.map((_, i) => (rollout.variations.find((w) => w.variation === i) || { weight: 0 }).weight);
const withWeights = (rollout, w) => ({ ...rollout, variations: w.map((weight, variation) => ({ variation, weight })) });

function NewRule({ flag, segments, onAdd }) {
  const [variation, setVariation] = useState(flag.variations.length > 1 ? 1 : 0);
  const serve = (clauses) => onAdd(variation === 'rollout'
    ? { clauses, rollout: withWeights({}, evenly(flag.variations.length)) }
    : { clauses, variation: Number(variation) });
  return html`<${NewRuleForm} label="New rule" segments=${segments} onAdd=${serve}>
    <label>Serve <select aria-label="Serve" value=${variation} onChange=${(e) => setVariation(e.target.value)}>
      ${flag.variations.map((_, i) => html`<option value=${i}>${label(flag, i)}</option>`)}
      <option value="rollout">a percentage rollout</option></select></label>
  <//>`;
}

// Individual targets of the user kind: per variation, the keys that always get it.
function Targets({ flag, readOnly, onChange }) {
  const keysOf = (i) => ((flag.targets || []).find((t) => t.variation === i) || { values: [] }).values;
  const change = (i, text) => {
    const keys = commaList(text);
    const others = (flag.targets || []).filter((t) => t.variation !== i);
    onChange([...others, ...(keys.length ? [{ variation: i, values: keys }] : [])].sort((a, b) => a.variation - b.variation));
  };
  const other = (flag.contextTargets || []).filter((t) => t.contextKind !== 'user' || t.values.length > 0);
  return html`<div class="targets">
    ${flag.variations.map((_, i) => html`<label class="target">Users who get ${label(flag, i)}
      <${CommittedField} aria-label=${`users who get variation ${i}`} value=${keysOf(i).join(', ')} disabled=${readOnly}
        placeholder="user keys, comma-separated" onCommit=${(text) => change(i, text)} /></label>`)}
    ${other.length > 0 && html`<p class="hint">${other.map((t) => `${t.contextKind}: ${t.values.join(', ')} get ${label(flag, t.variation)}`).join('; ')} (other context kinds: edit through the API)</p>`}
  </div>`;
}

const move = (list, from, to) => {
  const out = list.slice();
  out.splice(to, 0, out.splice(from, 1)[0]);
  return out;
};
const rolloutText = (flag, r) => `${r.kind === 'experiment' ? 'an experiment: ' : 'a rollout: '}${r.variations.map((w) => `${w.weight / 1000}% ${JSON.stringify(flag.variations[w.variation])}`).join(', ')}`;

export function TargetingEditor({ project, env, flag: saved, readOnly, onSaved }) {
  // The version the edit started from (base) and the edit (draft), kept together and only
  // changed by functions of their current value: a refresh that lands while a change is being
  // typed must see that change, not the values of the render it was scheduled from.
  // Saving expects base's version (If-Match), so a change made elsewhere meanwhile is refused
  // rather than undone; without an edit, theirs just shows.
  const [{ base, draft }, setEdit] = useState({ base: saved, draft: saved });
  const [segments, setSegments] = useState([]);
  const [error, setError] = useState('');
  const [said, setSaid] = useState('');
  useEffect(() => {
    setEdit((e) => (diff(e.base, e.draft).length === 0 ? { base: saved, draft: saved } : e));
  }, [saved]);
  const stale = saved.version !== base.version;
  useEffect(() => { get(`${envPath(project, env)}/segments`).then((r) => setSegments((r.items || []).map((s) => s.key))).catch(() => {}); }, [project, env]);
  const ft = draft.fallthrough || {};
  const rollout = !!ft.rollout;
  const weights = rollout ? weightsOf(draft, ft.rollout) : null;
  const set = (patch) => { setEdit((e) => ({ base: e.base, draft: { ...e.draft, ...patch } })); setSaid(''); };
  const changes = diff(base, draft);
  const show = (flag) => { setEdit({ base: flag, draft: flag }); onSaved(flag); };
  const save = async (comment) => {
    setError('');
    try {
      const body = { rules: draft.rules, fallthrough: draft.fallthrough, targets: draft.targets || [] };
      const r = await call('PATCH', `${envPath(project, env)}/flags/${enc(saved.key)}?comment=${enc(comment)}`, body, { 'If-Match': `"${base.version}"` });
      if (awaitingApproval(r)) {
        setEdit((e) => ({ base: e.base, draft: e.base }));
        setSaid(awaitingApproval(r));
        return true;
      }
      show(r.json);
    } catch (e) {
      if (e.status === 412) {
        setError('Someone changed this flag since you opened it: their version is shown now; make your change again.');
        show(await get(`${envPath(project, env)}/flags/${enc(saved.key)}`));
      } else {
        setError(e.field ? `${e.field}: ${e.message}` : e.message);
      }
      return false;
    }
  };
  return html`<section class="targeting" aria-labelledby="targeting-title">
    <h2 id="targeting-title">Targeting in ${env}</h2>
    <h3>Individual targets</h3>
    <${Targets} flag=${draft} readOnly=${readOnly} onChange=${(targets) => set({ targets })} />
    <h3>Rules</h3>
    <p class="hint">Tried in order after the individual targets; the first that matches decides.</p>
    ${(draft.rules || []).length === 0 ? html`<p>No rules.</p>` : html`<ol class="rules">${draft.rules.map((r, i) => html`<li>
      If ${r.clauses.map(describe).join(' and ')} → serve ${r.rollout ? rolloutText(draft, r.rollout) : label(draft, r.variation)}
      ${r.rollout && !readOnly && r.rollout.kind !== 'experiment' && html`<${Rollout} flag=${draft} name=${`Rule ${i + 1} rollout`} weights=${weightsOf(draft, r.rollout)}
        onChange=${(w) => set({ rules: draft.rules.map((x, j) => (j === i ? { ...x, rollout: withWeights(x.rollout, w) } : x)) })} />`}
      ${!readOnly && html`<span class="rule-actions">
        <button class="quiet" aria-label=${`move rule ${i + 1} up`} disabled=${i === 0} onClick=${() => set({ rules: move(draft.rules, i, i - 1) })}>↑</button>
        <button class="quiet" aria-label=${`move rule ${i + 1} down`} disabled=${i === draft.rules.length - 1} onClick=${() => set({ rules: move(draft.rules, i, i + 1) })}>↓</button>
        <button class="quiet" aria-label=${`delete rule ${i + 1}`} onClick=${() => set({ rules: draft.rules.filter((_, j) => j !== i) })}>Delete</button></span>`}
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
      ? html`<${Rollout} flag=${draft} weights=${weights} onChange=${(w) => set({ fallthrough: { rollout: withWeights(ft.rollout, w) } })} />`
      : html`<label>Serve <select value=${ft.variation ?? 0} disabled=${readOnly} onChange=${(e) => set({ fallthrough: { variation: Number(e.target.value) } })}>
          ${draft.variations.map((_, i) => html`<option value=${i}>${label(draft, i)}</option>`)}</select></label>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${stale && html`<p class="warning" role="alert">Someone changed this flag while you were editing (now version ${saved.version}): saving will be refused; discard to see their version.</p>`}
    ${!readOnly && html`<${Review} key=${base.version} changes=${changes} onSave=${save} onDiscard=${() => setEdit({ base: saved, draft: saved })}
      extra=${(comment) => html`<${ScheduleButton} project=${project} env=${env} flag=${draft} comment=${comment} onScheduled=${(text) => { setEdit((e) => ({ base: e.base, draft: e.base })); setSaid(text); }} />`} />`}
    ${said && html`<p role="status">${said}</p>`}
  </section>`;
}
