// Builds the console for embedding (ui/README.md): esbuild bundles src/main.js and
// src/style.css, each named by its content hash, and index.html refers to them.
//   node ui/build.mjs --node-modules DIR --out DIR
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name) => {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`usage: node build.mjs --node-modules DIR --out DIR (missing ${name})`);
  return process.argv[i + 1];
};
const nodeModules = arg('--node-modules');
const out = arg('--out');
const esbuild = await import(pathToFileURL(join(nodeModules, 'esbuild/lib/main.js')).href);

const bundle = async (entry) => {
  const r = await esbuild.build({
    entryPoints: [join(here, 'src', entry)], bundle: true, minify: true, format: 'esm', target: 'es2020',
    write: false, nodePaths: [nodeModules], legalComments: 'none', logLevel: 'warning',
  });
  return r.outputFiles[0].contents;
};
const named = (base, ext, bytes) => `${base}.${createHash('sha256').update(bytes).digest('hex').slice(0, 12)}.${ext}`;

const js = await bundle('main.js');
const css = await bundle('style.css');
const jsName = named('app', 'js', js);
const cssName = named('app', 'css', css);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
writeFileSync(join(out, jsName), js);
writeFileSync(join(out, cssName), css);
writeFileSync(join(out, 'index.html'),
  readFileSync(join(here, 'src', 'index.html'), 'utf8').replace('%SCRIPT%', `/ui/${jsName}`).replace('%STYLE%', `/ui/${cssName}`));
console.log(`console: ${jsName} (${js.length} bytes), ${cssName} (${css.length} bytes)`);
