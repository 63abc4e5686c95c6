// The reference model, for `pdpp-host bench`: a connector as a Node.js
// subprocess. It reads START as the first stdin line, writes the same
// contacts the demo connector writes (RECORD, STATE every 100, PROGRESS) and
// DONE as JSONL on stdout, then waits for stdin to close (the runtime's
// acknowledgement of DONE) before exiting.
import { createInterface } from "node:readline";

const count = Number(process.argv[2] ?? 1000);
const BASE = Date.UTC(2026, 0, 1) / 1000;
const emit = (msg) => process.stdout.write(JSON.stringify(msg) + "\n");
const iso = (secs) => new Date(secs * 1000).toISOString().replace(".000Z", "Z");

const lines = createInterface({ input: process.stdin });
let started = false;
lines.on("line", (line) => {
  if (started) return;
  started = true;
  const start = JSON.parse(line);
  if (start.type !== "START") throw new Error("expected START");
  let after = null;
  let emitted = 0;
  for (let i = 0; i < count; i++) {
    const id = "c" + String(i).padStart(5, "0");
    const updated_at = iso(BASE + i * 3600);
    const data = { email: `person${i}@example.test`, id, name: `Person ${i}`, updated_at };
    emit({ type: "RECORD", stream: "contacts", key: id, data, emitted_at: new Date().toISOString() });
    emitted++;
    after = updated_at;
    if (emitted % 100 === 0) {
      emit({ type: "STATE", stream: "contacts", cursor: { after } });
      emit({ type: "PROGRESS", stream: "contacts", message: "collecting", count: emitted });
    }
  }
  emit({ type: "STATE", stream: "contacts", cursor: { after } });
  emit({ type: "PROGRESS", stream: "contacts", message: "done", count: emitted, total: emitted });
  emit({ type: "DONE", status: "succeeded", records_emitted: emitted });
});
lines.on("close", () => process.exit(0));
