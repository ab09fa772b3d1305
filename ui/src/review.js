// Before anything is saved: the change as a diff, field by field, and a comment for the
// history (flag targeting, segments, scheduled changes use it).
import { h } from 'preact';
import { useState } from 'preact/hooks';
import htm from 'htm';
import { DiffTable } from './history.js';

const html = htm.bind(h);

// `onSave(comment)` returns false when it failed (the review stays open); `extra(comment)`,
// when given, draws more actions next to Save (the flag's "Schedule").
export function Review({ changes, onSave, onDiscard, extra }) {
  const [open, setOpen] = useState(false);
  const [comment, setComment] = useState('');
  if (changes.length === 0) return null;
  const done = async (run) => { if (await run(comment) !== false) { setComment(''); setOpen(false); } };
  return html`<div class="review">
    ${!open && html`<button onClick=${() => setOpen(true)}>Review ${changes.length} ${changes.length === 1 ? 'change' : 'changes'}…</button>`}
    ${open && html`<div role="group" aria-label="Review the change">
      <${DiffTable} rows=${changes} headings=${['now', 'after saving']} />
      <label>Comment <input value=${comment} onInput=${(e) => setComment(e.target.value)} placeholder="why (kept in history)" /></label>
      <button onClick=${() => done(onSave)}>Save</button>${' '}
      ${extra && extra(comment)}
      <button class="quiet" onClick=${() => { setOpen(false); onDiscard(); }}>Discard</button>
    </div>`}
  </div>`;
}
