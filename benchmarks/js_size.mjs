// Size budget of the browser code: stepup.js <= 12 kB, the built-in prompt (prompt.js) <= 10 kB,
// each of its message catalogs <= 3 kB and each method's browser half <= 4 kB,
// minified (esbuild) and gzipped (zlib, level 9). Prints a table; exits 1 over budget.
// Run: node benchmarks/js_size.mjs (after npm ci).
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { transformSync } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const KB = 1024;
const files = [
  { path: "stepup_core/static/stepup.js", budget: 12 * KB },
  { path: "stepup_core/static/react.js", budget: 4 * KB },
  { path: "stepup_core/static/callback.js", budget: 4 * KB },
  { path: "stepup_core/static/prompt.js", budget: 10 * KB },
  ...readdirSync(join(root, "stepup_core/static"))
    .filter((name) => /^prompt-[a-z]{2,3}\.js$/.test(name))
    .sort()
    .map((name) => ({ path: `stepup_core/static/${name}`, budget: 3 * KB })),
  ...methodModules().map((path) => ({ path, budget: 4 * KB })),
];

/** plugins/<plugin>/src/<package>/browser.js, every one there is. */
function methodModules() {
  const found = [];
  for (const plugin of readdirSync(join(root, "plugins")).sort()) {
    let packages = [];
    try {
      packages = readdirSync(join(root, "plugins", plugin, "src"));
    } catch {
      continue;
    }
    for (const name of packages.sort()) {
      const path = join("plugins", plugin, "src", name, "browser.js");
      try {
        readFileSync(join(root, path));
        found.push(path);
      } catch {
        // no browser half in this package
      }
    }
  }
  return found;
}

let over = 0;
const rows = files.map(({ path, budget }) => {
  const source = readFileSync(join(root, path), "utf8");
  const { code } = transformSync(source, { minify: true, format: "esm", target: "es2022" });
  const gzipped = gzipSync(code, { level: 9 }).length;
  const ok = gzipped <= budget;
  if (!ok) over += 1;
  return [relative(root, join(root, path)), source.length, code.length, gzipped, budget, ok ? "ok" : "OVER"];
});
const header = ["file", "source B", "minified B", "gzip B", "budget B", ""];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
const line = (r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join("  ");
console.log(line(header));
for (const row of rows) console.log(line(row));
console.log(over ? `${over} file(s) over budget` : "every file within budget");
process.exit(over ? 1 : 0);
