// Builds a JavaScript opsd plugin into a WebAssembly component:
//
//   node build.mjs ENTRY.js WIT_DIR WORLD OUT.wasm
//
// rolldown bundles ENTRY and the modules it imports into one ES module
// (the component's interfaces, `opsd:*` and `wasi:*`, stay imports), then
// ComponentizeJS embeds it in StarlingMonkey for the WIT world.
import { componentize } from '@bytecodealliance/componentize-js';
import { rolldown } from 'rolldown';
import { writeFile } from 'node:fs/promises';

const [entry, witPath, worldName, out] = process.argv.slice(2);
if (!out) {
  console.error('usage: node build.mjs ENTRY.js WIT_DIR WORLD OUT.wasm');
  process.exit(2);
}
const bundle = await rolldown({ input: entry, external: [/^opsd:/, /^wasi:/] });
const { output } = await bundle.generate({ format: 'esm' });
const { component } = await componentize(output[0].code, { witPath, worldName });
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes)`);
