// Evaluate: a context and a flag, the variation it gets and why — the explain trace drawn as
// the targets, rules and clauses tried (POST …/evaluate).
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { call, envPath, get } from './api.js';

const html = htm.bind(h);

function Clause({ c }) {
  const read = c.read === undefined ? '' : ` (read ${JSON.stringify(c.read)})`;
  return html`<li class=${c.matched ? 'hit' : 'miss'}>
    <span class="mark" aria-hidden="true">${c.matched ? '✓' : '✗'}</span>
    ${c.negate ? 'not ' : ''}${c.op === 'segmentMatch' ? html`in segment <code>${c.values.join(', ')}</code>`
      : html`<code>${c.contextKind || 'user'}.${c.attribute || 'key'}</code> ${c.op} <code>${JSON.stringify(c.values)}</code>${read}`}
    <span class="sr">${c.matched ? 'matched' : 'did not match'}</span>
    ${(c.segments || []).length > 0 && html`<ul>${c.segments.map((s) => html`<li>segment <code>${s.segment}</code>: ${s.result}</li>`)}</ul>`}
  </li>`;
}

function Step({ s }) {
  const title = s.step === 'rule' ? `Rule ${s.index + 1}${s.id ? ` (${s.id})` : ''}` : s.step === 'targets' ? `Individual targets (${s.contextKind || 'user'})`
    : s.step === 'prerequisite' ? `Prerequisite ${s.key}` : s.step;
  return html`<li class=${`step ${s.matched ? 'hit' : 'miss'}`}>
    <p><strong>${title}</strong> — ${s.matched ? 'matched' : 'no match'}${s.bucket !== undefined ? `, bucket ${s.bucket}` : ''}</p>
    ${(s.clauses || []).length > 0 && html`<ul class="clauses">${s.clauses.map((c) => html`<${Clause} c=${c} />`)}</ul>`}
  </li>`;
}

export function EvaluatePage({ project, env }) {
  const [flags, setFlags] = useState([]);
  const [flag, setFlag] = useState('');
  const [context, setContext] = useState('{\n  "kind": "user",\n  "key": "alice"\n}');
  const [result, setResult] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    get(`${envPath(project, env)}/flags?fields=summary`).then((r) => {
      const keys = (r.items || []).map((f) => f.key);
      setFlags(keys);
      setFlag((f) => f || keys[0] || '');
    }).catch((e) => setError(e.message));
  }, [project, env]);
  const run = async (ev) => {
    ev.preventDefault();
    setError('');
    setResult(null);
    let ctx;
    try { ctx = JSON.parse(context); } catch (e) { setError(`The context is not JSON: ${e.message}`); return; }
    try {
      setResult((await call('POST', `${envPath(project, env)}/evaluate`, { flag, context: ctx })).json);
    } catch (e) {
      setError(e.message);
    }
  };
  return html`<section aria-labelledby="evaluate-title">
    <h1 id="evaluate-title">Evaluate</h1>
    <form class="evaluate" onSubmit=${run}>
      <label for="eval-flag">Flag</label>
      <select id="eval-flag" value=${flag} onChange=${(e) => setFlag(e.target.value)}>${flags.map((k) => html`<option value=${k}>${k}</option>`)}</select>
      <label for="eval-context">Context (JSON)</label>
      <textarea id="eval-context" rows="6" spellcheck="false" value=${context} onInput=${(e) => setContext(e.target.value)}></textarea>
      <button type="submit">Evaluate</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${result && html`<div class="result" role="region" aria-label="Result">
      <p class="answer">${result.flag} → <code>${JSON.stringify(result.value)}</code> (variation ${result.variationIndex ?? 'none'}):${' '}<strong>${result.reason.kind}</strong>${result.reason.ruleId ? ` ${result.reason.ruleId}` : ''}</p>
      <ol class="trace" aria-label="What was tried">${(result.trace || []).map((s) => html`<${Step} s=${s} />`)}</ol>
    </div>`}
  </section>`;
}
