// The renders of bench_chat (the pairs it writes), timed with @huggingface/jinja: Template built once, rendered
// REPS times. Run from bench/run_chat.sh, which installs nothing: tests/reference/chat/node_modules must exist.
//   node bench/bench_chat_ref.mjs PAIRS.tsv REPS
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = dirname(fileURLToPath(import.meta.url));
const chat = join(here, "..", "tests", "reference", "chat");
const require = createRequire(join(chat, "package.json"));
const { Template } = await import(require.resolve("@huggingface/jinja"));
const [pairsPath, repsArg] = process.argv.slice(2);
const reps = Number(repsArg ?? 2000);
const { templates } = JSON.parse(readFileSync(join(chat, "templates.json"), "utf8"));
const { conversations } = JSON.parse(readFileSync(join(chat, "conversations.json"), "utf8"));
for (const line of readFileSync(pairsPath, "utf8").trim().split("\n")) {
  const [name, convName, path] = line.split("\t");
  const t = templates.find((x) => x.name === name);
  const conv = conversations.find((x) => x.name === convName);
  let text = readFileSync(t.file ? join(chat, t.file) : path, "utf8");
  if (!t.file) text = JSON.parse(text).chat_template;
  const template = new Template(text);
  const ctx = { messages: conv.messages, add_generation_prompt: true, tools: null, documents: null, ...t.context };
  template.render(ctx);
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < reps; r++) template.render(ctx);
  const us = Number(process.hrtime.bigint() - t0) / 1e3 / reps;
  console.log(`${name}\t${us.toFixed(3)}`);
}
