// Expected training rows for tests/test_chat_data.c: every row of rows.jsonl (chat conversations, conversational and
// plain prompt/completion, text) encoded as TRL's SFTTrainer encodes it, with the real tokenizers of
// ../shared/data/tokenizers and the committed chat templates, computed independently of libpissa:
//
// - templates are rendered by @huggingface/jinja and texts tokenized by transformers.js (@huggingface/transformers,
//   a port of Hugging Face tokenizers), with TRL's rules: apply_chat_template(tokenize=True) tokenizes the render
//   without special tokens; a text or a completion gets the eos token unless it ends with it and is tokenized with
//   them; a completion's targets start after the tokens of the prompt alone (rendered with the generation prompt
//   when conversational);
// - the assistant spans are found by TRL's own rule, {% generation %} blocks: each template comes with a
//   hand-marked copy (PATCHES below) that prints \u0001 where an assistant turn's text starts and \u0002 after its
//   end-of-turn token; the markers' places in the render are the spans, and the render without them must be the
//   unmarked template's render byte for byte (checked). A template with real {% generation %} blocks gets the
//   markers in place of its tags. So the spans come from reading the templates, not from libpissa's search;
// - a token is a target when it holds a byte of a span (transformers' char_to_token of the span's first and last
//   characters), with each token's bytes found by laying the token strings along the render: byte-level tokens
//   through GPT-2's byte table, SentencePiece-style ones with ▁ as a space and <0xHH> as a byte, where the
//   normalizer's ▁ prepended to each piece between added tokens holds no byte of the text (checked to cover the
//   text exactly).
//
//   cd tests/reference/data && npm install --ignore-scripts && node make_data_reference.mjs [OUT | --check]
//
// Writes expected.json (deterministic: the same inputs and package versions give the same bytes); --check exits 1
// when expected.json is not what the inputs give.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Template } from '@huggingface/jinja';
import { AutoTokenizer, env } from '@huggingface/transformers';

const here = path.dirname(fileURLToPath(import.meta.url));
const shared = path.resolve(here, '../../../../shared/data');
const arg = process.argv[2];
const outPath = arg && arg !== '--check' ? path.resolve(arg) : path.join(here, 'expected.json');
const version = (p) =>
  JSON.parse(fs.readFileSync(path.join(here, 'node_modules/@huggingface', p, 'package.json'))).version;
env.allowRemoteModels = false;
env.allowLocalModels = true;

const OPEN = '\u0001', CLOSE = '\u0002';
const A = "message['role'] == 'assistant'", a = "message.role == 'assistant'";
const QUIET = "(enable_thinking is defined and enable_thinking is false and not reasoning_content.strip('\\n'))";
// [search, replacement, occurrences]: each search must occur exactly that many times in the template.
const PATCHES = {
  qwen3: [
    // the turn the generation prompt opens: with enable_thinking false that prompt holds the empty think block
    ["message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}",
      `message.role + '\\n' + ('' if ${QUIET} else '${OPEN}') + '<think>\\n' + reasoning_content.strip('\\n') + ` +
      `'\\n</think>\\n\\n' + ('${OPEN}' if ${QUIET} else '') + content.lstrip('\\n') }}`, 1],
    ["message.role + '\\n' + content }}", `message.role + '\\n${OPEN}' + content }}`, 2],
    ["{{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}",
      `{{- '<|im_end|>${CLOSE}\\n' }}\n    {%- elif message.role == "tool" %}`, 1],
  ],
  llama3: [
    ["'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>'",
      `'<|end_header_id|>\n\n' + ('${OPEN}' if ${A} else '') + message['content'] | trim + '<|eot_id|>' + ` +
      `('${CLOSE}' if ${A} else '')`, 1],
  ],
  chatml: [
    ["message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}",
      `message.role + '\\n' + ('${OPEN}' if ${a} else '') + message.content + '<|im_end|>' + ` +
      `('${CLOSE}' if ${a} else '') + '\\n' }}`, 1],
  ],
  mistral: [["{{- ' ' + message['content'] + eos_token}}",
    `{{- '${OPEN} ' + message['content'] + eos_token + '${CLOSE}'}}`, 1]],
  zephyr: [["'<|assistant|>\n'  + message['content'] + eos_token }}",
    `'<|assistant|>\n${OPEN}' + message['content'] + eos_token + '${CLOSE}' }}`, 1]],
  smollm2: [
    ["message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}",
      `message['role'] + '\n' + ('${OPEN}' if ${A} else '') + message['content'] + '<|im_end|>' + ` +
      `('${CLOSE}' if ${A} else '') + '\n'}}`, 1],
  ],
  generation: [
    ['{% generation %}', `{{ '${OPEN}' }}`, 1],
    ['{% endgeneration %}', `{{ '${CLOSE}' }}`, 1],
  ],
};

// tokenizer: a folder, 'shared:' under ../shared/data; template: null (the tokenizer's) or a file here.
const SUITES = [
  { name: 'qwen3', tokenizer: 'shared:tokenizers/qwen3', template: null, patches: 'qwen3' },
  { name: 'llama3', tokenizer: 'shared:tokenizers/llama3', template: null, patches: 'llama3' },
  { name: 'chatml', tokenizer: 'shared:tokenizers/qwen3', template: '../chat/templates/qwen2.5.jinja',
    patches: 'chatml', skip: ['tool_call'] }, // its tool-call branch prints the turn's first newline in two places
  { name: 'mistral', tokenizer: 'shared:tokenizers/llama2', template: '../chat/templates/mistral-v0.1.jinja',
    patches: 'mistral' },
  { name: 'zephyr', tokenizer: 'shared:tokenizers/llama2', template: '../chat/templates/zephyr.jinja',
    patches: 'zephyr' },
  { name: 'smollm2', tokenizer: '../tokenizers/gpt2_style', template: '../chat/templates/smollm2.jinja',
    patches: 'smollm2' },
  { name: 'generation', tokenizer: '../tokenizers/gpt2_style', template: 'chatml_generation.jinja',
    patches: 'generation' },
];

function patch(text, rules, name) {
  for (const [from, to, count] of rules) {
    const n = text.split(from).length - 1;
    if (n !== count) throw new Error(`${name}: '${from}' occurs ${n} times, expected ${count}`);
    text = text.replaceAll(from, to);
  }
  return text;
}

// GPT-2's bytes_to_unicode, inverted: the byte each character of a byte-level token stands for.
const byteOfChar = (() => {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  return new Map(cs.map((c, i) => [String.fromCodePoint(c), bs[i]]));
})();

const utf8 = (s) => Array.from(new TextEncoder().encode(s));

// [start, end) byte offsets of each token of TOKENS (strings, as the tokenizer returned them) in the text BYTES.
// PREPEND: the normalizer prepends ▁ to each piece of text between added tokens (SentencePiece style).
function tokenOffsets(tok, tokens, bytes, byteLevel, prepend) {
  const added = new Map(tok._tokenizer.added_tokens.map((t) => [t.content, t]));
  const out = [];
  let c = 0, pieceStart = true;
  for (const t of tokens) {
    let b;
    if (added.has(t)) b = utf8(t);
    else if (byteLevel) {
      b = [...t].map((ch) => {
        const v = byteOfChar.get(ch);
        if (v === undefined) throw new Error(`char ${ch} is not in GPT-2's byte table`);
        return v;
      });
    }
    else if (/^<0x[0-9A-F]{2}>$/.test(t)) b = [parseInt(t.slice(3, 5), 16)];
    else b = utf8(t.replaceAll('\u2581', ' '));
    const at = (k, s) => s.every((v, i) => bytes[k + i] === v);
    if (prepend && pieceStart && !added.has(t)) { /* the piece's first byte is the prepended ▁ */
      if (b[0] !== 0x20) throw new Error(`token ${JSON.stringify(t)} starts a piece without the prepended space`);
      b = b.slice(1);
    }
    if (at(c, b)) out.push([c, c + b.length]), c += b.length;
    else throw new Error(`token ${JSON.stringify(t)} does not lie at byte ${c} of the text`);
    pieceStart = added.has(t);
  }
  if (c !== bytes.length) throw new Error(`the tokens cover ${c} of ${bytes.length} bytes`);
  return out;
}

// The render of TEMPLATE (plain) and of MARKED, with the spans of the markers (byte offsets in the plain render).
function renderMarked(plain, marked, context) {
  const want = plain.render(structuredClone(context));
  const got = marked.render(structuredClone(context));
  const spans = [];
  let text = '', open = -1;
  for (const ch of got) {
    if (ch === OPEN) { if (open >= 0) throw new Error('nested marker'); open = utf8(text).length; }
    else if (ch === CLOSE) {
      if (open < 0) throw new Error('unopened marker');
      spans.push([open, utf8(text).length]);
      open = -1;
    }
    else text += ch;
  }
  if (open >= 0) throw new Error('unclosed marker');
  if (text !== want) {
    throw new Error(`the marked template renders differently:\n${JSON.stringify(text)}\n${JSON.stringify(want)}`);
  }
  return { text, spans };
}

// Token ranges [a, b) that hold a byte of a span.
function targetRanges(offsets, spans, from = 0) {
  const mask = offsets.map(([s, e], k) => k >= from && s < e && spans.some(([x, y]) => s < y && x < e && x < y));
  const ranges = [];
  mask.forEach((m, k) => {
    if (m && (k === 0 || !mask[k - 1])) ranges.push([k, k + 1]);
    else if (m) ranges[ranges.length - 1][1] = k + 1;
  });
  return ranges;
}

function specialTokens(config) {
  const ctx = {};
  for (const k of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    const v = config[k];
    const s = typeof v === 'string' ? v : v && typeof v.content === 'string' ? v.content : null;
    if (s !== null) ctx[k] = s;
  }
  return ctx;
}

const rows = fs.readFileSync(path.join(here, 'rows.jsonl'), 'utf8').split('\n').filter((l) => l.trim());
const suites = [];
for (const s of SUITES) {
  const dir = s.tokenizer.startsWith('shared:') ? path.join(shared, s.tokenizer.slice(7))
    : path.join(here, s.tokenizer);
  env.localModelPath = path.dirname(dir) + '/';
  const tok = await AutoTokenizer.from_pretrained(path.basename(dir));
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  const tj = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const byteLevel = JSON.stringify(tj.decoder ?? {}).includes('"ByteLevel"');
  const prepend = JSON.stringify(tj.normalizer ?? {}).includes('"Prepend"');
  const source = s.template ? fs.readFileSync(path.join(here, s.template), 'utf8') : config.chat_template;
  const plain = new Template(source), marked = new Template(patch(source, PATCHES[s.patches], s.name));
  const specials = specialTokens(config), eos = specials.eos_token;
  const encode = (text, special) => {
    const e = tok._tokenizer.encode(text, { add_special_tokens: special });
    return { ids: Array.from(e.ids, Number), tokens: e.tokens };
  };
  const render = (messages, agp, row) => renderMarked(plain, marked, {
    messages, add_generation_prompt: agp, tools: row.tools ?? null, documents: null, ...specials,
    ...(row.chat_template_kwargs ?? {}),
  });
  const out = [];
  for (const line of rows) {
    const row = JSON.parse(line);
    if (s.skip?.includes(row.name)) continue;
    const r = { name: row.name };
    try {
      if (typeof row.text === 'string' || typeof row.prompt === 'string') {
        const withEos = (x) => (eos && !x.endsWith(eos) ? x + eos : x);
        const text = typeof row.text === 'string' ? withEos(row.text) : row.prompt + withEos(row.completion);
        r.input_ids = encode(text, true).ids;
        const from = typeof row.text === 'string' ? 0 : encode(row.prompt, true).ids.length;
        r.targets = from < r.input_ids.length ? [[from, r.input_ids.length]] : [];
      } else {
        const messages = row.messages ?? [...row.prompt, ...row.completion];
        const { text, spans } = render(messages, false, row);
        const e = encode(text, false);
        r.input_ids = e.ids;
        const from = row.messages ? 0 : encode(render(row.prompt, true, row).text, false).ids.length;
        r.targets = targetRanges(tokenOffsets(tok, e.tokens, utf8(text), byteLevel, prepend), spans, from);
      }
    } catch (err) {
      if (!/Conversation roles|Only user and assistant|raise/i.test(String(err.message ?? err))) throw err;
      r.error = String(err.message ?? err); // the template rejects the conversation: libpissa must too
    }
    out.push(r);
  }
  suites.push({ name: s.name, tokenizer: s.tokenizer, template: s.template, rows: out });
}

const doc = {
  generator: `@huggingface/transformers ${version('transformers')}, @huggingface/jinja ${version('jinja')}`,
  rules: 'TRL 1.10 (trl/trainer/sft_trainer.py _prepare_dataset): assistant_only_loss and completion_only_loss on',
  suites,
};
// One row per line: readable diffs, small file.
const text = '{"generator": ' + JSON.stringify(doc.generator) + ', "rules": ' + JSON.stringify(doc.rules) +
  ', "suites": [\n' + suites.map((s) => ' {"name": ' + JSON.stringify(s.name) + ', "tokenizer": ' +
    JSON.stringify(s.tokenizer) + ', "template": ' + JSON.stringify(s.template) + ', "rows": [\n' +
    s.rows.map((r) => '  ' + JSON.stringify(r)).join(',\n') + ']}').join(',\n') + ']}\n';
if (arg === '--check') {
  const old = fs.existsSync(outPath) ? fs.readFileSync(outPath, 'utf8') : '';
  if (old !== text) { console.error(`${outPath} is stale: rerun node make_data_reference.mjs`); process.exit(1); }
} else {
  fs.writeFileSync(outPath, text);
  console.log(`wrote ${outPath}: ${suites.map((s) => `${s.name} ${s.rows.length}`).join(', ')}`);
}
