// The reference model's browser run, for `pdpp-host bench --browser`: a
// Node.js process that starts its own chromedriver and headless Chromium,
// opens one page, reads its list items and quits. No dependency beyond
// Node itself: W3C WebDriver over HTTP with the global fetch.
//
//   node bench/node-browser-baseline.mjs URL [CHROMEDRIVER] [CHROMIUM]
//
// Prints one JSON line when the first page is loaded ({"first_page": true})
// and one at the end: the times it measured itself, and the memory of the
// driver and the browser (the chromedriver process and every descendant),
// read from /proc before quitting.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, chromedriver = "/usr/bin/chromedriver", chromium = "/usr/bin/chromium"] = process.argv.slice(2);
const started = process.hrtime.bigint();
const sinceStart = () => Number(process.hrtime.bigint() - started) / 1e6;

const profile = mkdtempSync(join(tmpdir(), "node-bench-"));
const driver = spawn(chromedriver, ["--port=0", "--log-level=SEVERE"], { stdio: ["ignore", "pipe", "ignore"] });
const port = await new Promise((resolve, reject) => {
  let seen = "";
  driver.stdout.on("data", (chunk) => {
    seen += chunk;
    const m = seen.match(/started successfully on port (\d+)/);
    if (m) resolve(Number(m[1]));
  });
  driver.on("exit", () => reject(new Error("chromedriver exited")));
});
const base = `http://127.0.0.1:${port}`;

async function call(method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value)}`);
  return json.value;
}

const session = await call("POST", "/session", {
  capabilities: {
    alwaysMatch: {
      browserName: "chrome",
      "goog:chromeOptions": {
        binary: chromium,
        args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", `--user-data-dir=${profile}`],
      },
    },
  },
});
const sid = session.sessionId;
const startMs = sinceStart();
await call("POST", `/session/${sid}/url`, { url });
const firstPageMs = sinceStart();
process.stdout.write(JSON.stringify({ first_page: true }) + "\n");
const found = await call("POST", `/session/${sid}/elements`, { using: "css selector", value: "li" });
const texts = [];
for (const el of found) {
  const id = Object.values(el)[0];
  texts.push(await call("GET", `/session/${sid}/element/${id}/text`));
}
const readMs = sinceStart() - firstPageMs;

// Memory of chromedriver and all its descendants.
function children() {
  const byParent = new Map();
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!byParent.has(ppid)) byParent.set(ppid, []);
      byParent.get(ppid).push(Number(pid));
    } catch {}
  }
  return byParent;
}
const tree = children();
const all = [];
const queue = [driver.pid];
while (queue.length) {
  const pid = queue.shift();
  all.push(pid);
  queue.push(...(tree.get(pid) ?? []));
}
let rss = 0;
let pss = 0;
for (const pid of all) {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    rss += Number(rollup.match(/^Rss:\s+(\d+) kB/m)?.[1] ?? 0) * 1024;
    pss += Number(rollup.match(/^Pss:\s+(\d+) kB/m)?.[1] ?? 0) * 1024;
  } catch {}
}
const nodeRss = process.memoryUsage().rss;

await call("DELETE", `/session/${sid}`);
driver.kill("SIGKILL");
rmSync(profile, { recursive: true, force: true });
process.stdout.write(
  JSON.stringify({
    items: texts.length,
    start_ms: startMs,
    first_page_ms: firstPageMs,
    read_ms: readMs,
    processes: all.length,
    rss_bytes: rss,
    pss_bytes: pss,
    node_rss_bytes: nodeRss,
  }) + "\n",
);
