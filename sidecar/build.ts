/**
 * Bundles the sidecar into one file, `dist/sidecar.mjs`, which is all a session
 * pod needs besides Node: the sidecar image runs it, and the injection mode copies
 * it into any image that has Node.
 */
import { build } from 'esbuild'

await build({
  entryPoints: ['src/bin.ts'],
  outfile: 'dist/sidecar.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  sourcemap: false,
  // The OpenTelemetry SDK rides along for traced sessions (a lazily initialised module, never
  // evaluated without an OTLP endpoint). Whitespace and syntax minification keeps the bundle —
  // and an untraced sidecar's memory — where it was without it; names stay for stack traces.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'linked',
  // ws loads these optional native helpers inside try/catch; modern Node needs neither.
  external: ['bufferutil', 'utf-8-validate'],
  banner: {
    js: "import { createRequire as __ferryCreateRequire } from 'node:module'; const require = __ferryCreateRequire(import.meta.url);",
  },
})
