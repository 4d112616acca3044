// Builds the web client into the directory given as the only argument:
//   <out>/index.html                     (no-cache; names the assets below)
//   <out>/assets/main-<hash>.js (+ .map) one minified ES module: src/main.js + MQTT.js
//                                        + libsignal-protocol-typescript
//   <out>/assets/style-<hash>.css        style.css, minified
// chat-api serves <out> at / (CHAT_WEB_DIR). Hashed names can be cached forever.
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out || process.argv.length > 3) {
  console.error('usage: node build.mjs <output dir>');
  process.exit(2);
}
const outDir = path.resolve(out);
const assetsDir = path.join(outDir, 'assets');
if (outDir === here || here.startsWith(outDir + path.sep) || outDir.startsWith(here + path.sep)) {
  console.error(`build.mjs: the output dir must be outside the source tree (${here})`);
  process.exit(2);
}

// Only what this script writes is removed: stale hashed assets, index.html.
await mkdir(assetsDir, { recursive: true });
for (const name of await readdir(assetsDir)) {
  if (/^(main|style)-[A-Za-z0-9]+\.(js|css)(\.map)?$/.test(name)) {
    await rm(path.join(assetsDir, name));
  }
}

// libsignal-protocol-typescript falls back to msrcrypto (a 260 KB WebCrypto
// in JavaScript) when there is no globalThis.crypto. Every browser has one,
// and where crypto.subtle is missing (not a secure context) e2e.js turns
// encryption off, so the fallback is never used: it is left out.
const noMsrcrypto = {
  name: 'no-msrcrypto',
  setup(build) {
    build.onResolve({ filter: /\/msrcrypto$/ }, (args) =>
      args.importer.includes(`${path.sep}libsignal-protocol-typescript${path.sep}`)
        ? { path: 'msrcrypto', namespace: 'no-msrcrypto' }
        : undefined);
    build.onLoad({ filter: /.*/, namespace: 'no-msrcrypto' }, () => ({
      contents: 'module.exports = {};',
      loader: 'js',
    }));
  },
};

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { main: 'src/main.js', style: 'style.css' },
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome100', 'firefox100', 'safari15.4'],
  minify: true,
  sourcemap: 'linked',
  entryNames: '[name]-[hash]',
  outdir: assetsDir,
  metafile: true,
  logLevel: 'warning',
  plugins: [noMsrcrypto],
});

// The generated names, by entry point.
const names = {};
for (const [file, info] of Object.entries(result.metafile.outputs)) {
  if (info.entryPoint) names[info.entryPoint] = path.basename(file);
}
const js = names['src/main.js'];
const css = names['style.css'];
if (!js || !css) throw new Error(`build.mjs: missing output in ${JSON.stringify(names)}`);

// index.html names the unbundled sources (so it also documents them); point
// it at the built assets instead.
let html = await readFile(path.join(here, 'index.html'), 'utf8');
const replaceOnce = (from, to) => {
  if (!html.includes(from)) throw new Error(`build.mjs: index.html lacks ${from}`);
  html = html.replace(from, to);
};
replaceOnce('href="style.css"', `href="assets/${css}"`);
replaceOnce('src="src/main.js"', `src="assets/${js}"`);
await writeFile(path.join(outDir, 'index.html'), html);

console.log(`web client built in ${outDir}: assets/${js}, assets/${css}`);
