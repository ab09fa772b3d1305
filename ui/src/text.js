// What the console's forms read from text inputs.

// "a, b , ,c" -> ["a", "b", "c"]: tags, environments, user keys, clause values.
export const commaList = (text) => text.split(',').map((s) => s.trim()).filter((s) => s !== '');
