// Renders every template in templates.json with every conversation in conversations.json, with
// add_generation_prompt false and true, through @huggingface/jinja (the JavaScript port of jinja2 that
// transformers.js uses), and writes expected.json, which tests/test_jinja.c compares libpissa's renders with.
//
//   cd tests/reference/chat && npm install --ignore-scripts && node make_chat_reference.mjs [OUT | --check]
//
// --check writes nothing: it exits 1, naming the first case that changed, if expected.json is not what the
// current inputs and @huggingface/jinja give.
//
// The variables are the ones transformers' apply_chat_template passes: messages, add_generation_prompt,
// tools and documents (null unless the conversation gives them), the template's special tokens, and the
// conversation's extra variables. Deterministic: the same inputs give the same file byte for byte (Llama 3.x
// get a fixed date_string, so strftime_now is never reached).
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Template } from "@huggingface/jinja";

const here = dirname(fileURLToPath(import.meta.url));
const sharedData = join(here, "..", "..", "..", "..", "shared", "data");
const { templates } = JSON.parse(readFileSync(join(here, "templates.json"), "utf8"));
const { conversations } = JSON.parse(readFileSync(join(here, "conversations.json"), "utf8"));
const pkg = JSON.parse(readFileSync(join(here, "node_modules", "@huggingface", "jinja", "package.json"), "utf8"));

function templateText(t) {
  if (t.file) return readFileSync(join(here, t.file), "utf8");
  const config = JSON.parse(readFileSync(join(sharedData, t.shared), "utf8"));
  if (typeof config.chat_template !== "string") throw new Error(`${t.shared} has no chat_template string`);
  return config.chat_template;
}

const cases = [];
for (const t of templates) {
  const text = templateText(t);
  const template = new Template(text);
  for (const conv of conversations) {
    for (const addGenerationPrompt of [false, true]) {
      const context = {
        messages: conv.messages,
        add_generation_prompt: addGenerationPrompt,
        tools: null,
        documents: null,
        ...t.context,
        ...(conv.context ?? {}),
      };
      const c = { template: t.name, conversation: conv.name, add_generation_prompt: addGenerationPrompt };
      try {
        c.output = template.render(structuredClone(context));
      } catch (e) {
        c.error = String(e.message ?? e);
        // raised: the template's own raise_exception(...) (its text is in the template); otherwise a runtime
        // error such as a null iterated. @huggingface/jinja will not let the context replace raise_exception.
        c.raised = text.includes(c.error);
      }
      cases.push(c);
    }
  }
}

const doc = { generator: `@huggingface/jinja ${pkg.version}`, cases };
const text = JSON.stringify(doc, null, 1) + "\n";
if (process.argv[2] === "--check") {
  const committed = readFileSync(join(here, "expected.json"), "utf8");
  if (committed === text) {
    console.log(`expected.json is current (${cases.length} cases)`);
  } else {
    const old = JSON.parse(committed).cases;
    const i = cases.findIndex((c, k) => JSON.stringify(c) !== JSON.stringify(old[k]));
    const c = cases[i] ?? old[i];
    console.error(`expected.json is stale: first change at case ${i}` +
      (c ? ` (${c.template} / ${c.conversation} / add_generation_prompt=${c.add_generation_prompt})` : ""));
    process.exit(1);
  }
} else {
  const out = process.argv[2] ?? join(here, "expected.json");
  writeFileSync(out, text);
  console.log(`${cases.length} cases (${cases.filter((c) => c.error).length} errors) -> ${out}`);
}
