// The clause builder shared by a flag's rules and a segment's rules: an operator from the
// list, then an attribute and values, or a segment of the environment; clauses of a rule all
// have to match ("and"), each clause may be negated.
import { h } from 'preact';
import { useState } from 'preact/hooks';
import htm from 'htm';
import { commaList } from './text.js';

const html = htm.bind(h);
export const OPERATORS = ['in', 'startsWith', 'endsWith', 'contains', 'matches', 'lessThan', 'lessThanOrEqual', 'greaterThan',
  'greaterThanOrEqual', 'before', 'after', 'semVerEqual', 'semVerLessThan', 'semVerGreaterThan', 'segmentMatch'];
const NUMERIC = new Set(['lessThan', 'lessThanOrEqual', 'greaterThan', 'greaterThanOrEqual']);

export const describe = (c) => (c.op === 'segmentMatch'
  ? `${c.negate ? 'not ' : ''}in segment ${c.values.join(', ')}`
  : `${c.contextKind && c.contextKind !== 'user' ? `${c.contextKind}.` : ''}${c.attribute} ${c.negate ? 'not ' : ''}${c.op} ${JSON.stringify(c.values)}`);

// One clause being written; `onAdd(clause)` when it is complete.
function ClauseFields({ segments, onClause, clause }) {
  const set = (patch) => onClause({ ...clause, ...patch });
  return html`<div class="clause-fields">
    <label>Context kind <input aria-label="Context kind" size="6" value=${clause.contextKind} onInput=${(e) => set({ contextKind: e.target.value })} /></label>
    <label>Operator <select aria-label="Operator" value=${clause.op} onChange=${(e) => set({ op: e.target.value })}>${OPERATORS.map((o) => html`<option value=${o}>${o}</option>`)}</select></label>
    ${clause.op === 'segmentMatch'
      ? html`<label>Segment <select aria-label="Segment" value=${clause.segment} onChange=${(e) => set({ segment: e.target.value })}>
          ${segments.length === 0 ? html`<option value="">(no segments)</option>` : segments.map((s) => html`<option value=${s}>${s}</option>`)}</select></label>`
      : html`<label>Attribute <input aria-label="Attribute" size="10" value=${clause.attribute} onInput=${(e) => set({ attribute: e.target.value })} /></label>
        <label>Values <input aria-label="Values" value=${clause.values} placeholder="comma-separated" onInput=${(e) => set({ values: e.target.value })} /></label>`}
    <label class="check"><input type="checkbox" aria-label="Negate" checked=${clause.negate} onChange=${(e) => set({ negate: e.target.checked })} /> not</label>
  </div>`;
}

const blank = (segments) => ({ contextKind: 'user', op: 'in', attribute: 'key', values: '', segment: segments[0] || '', negate: false });

// The clause as stored, or an error message.
export function toClause(c) {
  if (c.op === 'segmentMatch') {
    if (!c.segment) return 'Choose a segment (create one on the Segments page).';
    return { contextKind: c.contextKind || 'user', attribute: '', op: c.op, values: [c.segment], negate: c.negate };
  }
  if (!c.attribute.trim()) return 'Name the attribute the clause reads.';
  const values = commaList(c.values).map((s) => (NUMERIC.has(c.op) ? Number(s) : s));
  if (values.length === 0) return 'Give at least one value.';
  if (values.some((v) => typeof v === 'number' && !Number.isFinite(v))) return `${c.op} compares numbers: every value must be one.`;
  return { contextKind: c.contextKind || 'user', attribute: c.attribute.trim(), op: c.op, values, negate: c.negate };
}

// A new rule: clauses added one by one ("and"), then `children` (what the rule serves) and
// the submit button; `onAdd(clauses)` with every clause, the one being written included.
export function NewRuleForm({ segments, label, onAdd, children }) {
  const [done, setDone] = useState([]);
  const [clause, setClause] = useState(blank(segments));
  const [error, setError] = useState('');
  const current = { ...clause, segment: clause.segment || segments[0] || '' };
  const and = () => {
    const c = toClause(current);
    if (typeof c === 'string') return setError(c);
    setError('');
    setDone([...done, c]);
    setClause(blank(segments));
  };
  const add = (ev) => {
    ev.preventDefault();
    const c = toClause(current);
    if (typeof c === 'string') return setError(c);
    setError('');
    onAdd([...done, c]);
    setDone([]);
    setClause(blank(segments));
  };
  return html`<form class="new-rule" onSubmit=${add} aria-label=${label}>
    ${done.length > 0 && html`<p class="pending">If ${done.map(describe).join(' and ')} and…</p>`}
    <${ClauseFields} segments=${segments} clause=${current} onClause=${setClause} />
    ${children}
    <button type="button" class="quiet" onClick=${and}>And another clause</button>
    <button type="submit">Add rule</button>
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </form>`;
}
