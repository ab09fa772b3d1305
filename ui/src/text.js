// What the console's forms read from text inputs, and the field that holds what is typed
// until it is committed.
import { h } from 'preact';
import { useState } from 'preact/hooks';

// "a, b , ,c" -> ["a", "b", "c"]: tags, environments, user keys, clause values.
export const commaList = (text) => text.split(',').map((s) => s.trim()).filter((s) => s !== '');

// An input (or, with as="textarea", a text area) whose value is a draft's and is read back
// when committed (Tab, Enter, leaving it): onCommit gets the text. Until then the text is the
// user's: a re-render meanwhile (a list arriving, the page's live refresh) keeps it, where a
// plain controlled input would be reset to the draft's value and lose it. A new value from
// outside (the edit saved, discarded or replaced by someone else's) shows instead.
export function CommittedField({ value, onCommit, as = 'input', ...rest }) {
  const [typed, setTyped] = useState(null);  // { text, over }: typed over the value `over`
  const text = typed && typed.over === value ? typed.text : value;
  return h(as, {
    ...rest,
    value: text,
    onInput: (e) => setTyped({ text: e.target.value, over: value }),
    onChange: (e) => { setTyped(null); onCommit(e.target.value); },
  });
}
