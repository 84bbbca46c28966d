// Builds gpt2_style/: a small GPT-2 / SmolLM2-style tokenizer.json (byte-level BPE, Digits + ByteLevel
// pre-tokenizers, added tokens with every flag transformers.js honours) and its tokenizer_config.json, by training
// 700 BPE merges on the first 300 kB of tinyshakespeare plus a few lines of other scripts. Deterministic: ties between
// equally frequent pairs go to the smaller "a b" string. The output is committed; rerun only to change the tokenizer:
//   node make_gpt2_style.mjs ../../../../shared/data/tinyshakespeare/input.txt
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const src = process.argv[2] ?? path.join(here, '../../../../shared/data/tinyshakespeare/input.txt');
const text = fs.readFileSync(src, 'utf8').slice(0, 300000) + '\n' + [
  '日本語のテキストと中文文本，한국어 문장입니다.',
  'Ελληνικά και русский текст, עברית ועברית, العربية والعربية, हिन्दी पाठ।',
  'Emoji 👍🏽 and 👨‍👩‍👧 families; numbers 1234567890 and 3.14159.',
].join('\n').repeat(20);

// GPT-2's byte-to-character table (tokenizers' bytes_char).
const bs = [];
for (let b = 33; b <= 126; b++) bs.push(b);
for (let b = 161; b <= 172; b++) bs.push(b);
for (let b = 174; b <= 255; b++) bs.push(b);
const cs = bs.slice();
for (let b = 0, n = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
const byteChar = new Array(256);
bs.forEach((b, i) => { byteChar[b] = String.fromCodePoint(cs[i]); });

// Pre-tokenization as the file will declare it: Digits (individual) then the GPT-2 regex.
const gpt2 = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const enc = new TextEncoder();
const counts = new Map();
for (const part of text.split(/([0-9])/)) {
  for (const m of part.match(gpt2) ?? []) {
    const w = Array.from(enc.encode(m), (b) => byteChar[b]).join('');
    counts.set(w, (counts.get(w) ?? 0) + 1);
  }
}
let words = [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  .map(([w, c]) => ({ sym: Array.from(w), c }));

const vocab = {};
for (let b = 0; b < 256; b++) vocab[byteChar[b]] = b;
let next = 256;
const merges = [];
for (let k = 0; k < 700; k++) {
  const pairs = new Map();
  for (const { sym, c } of words)
    for (let i = 0; i + 1 < sym.length; i++) {
      const key = sym[i] + ' ' + sym[i + 1];
      pairs.set(key, (pairs.get(key) ?? 0) + c);
    }
  let best = null, bestN = 0;
  for (const [key, n] of pairs) if (n > bestN || (n === bestN && key < best)) { best = key; bestN = n; }
  if (!best || bestN < 2) break;
  const [a, b] = best.split(' ');
  merges.push([a, b]);
  if (!(a + b in vocab)) vocab[a + b] = next++;
  for (const w of words) {
    const out = [];
    for (let i = 0; i < w.sym.length; i++) {
      if (i + 1 < w.sym.length && w.sym[i] === a && w.sym[i + 1] === b) { out.push(a + b); i++; }
      else out.push(w.sym[i]);
    }
    w.sym = out;
  }
}

const added = [
  { content: '<|endoftext|>', special: true },
  { content: '<|im_start|>', special: true },
  { content: '<|im_end|>', special: true },
  { content: '<mask>', special: true, lstrip: true },
  { content: '<tool_call>', special: false, normalized: false },
  { content: '＜ｎｏｔｅ＞', special: false, normalized: true }, // NFKC makes it "<note>": matched on normalized text
].map((t, i) => ({
  id: next + i, content: t.content, single_word: false, lstrip: t.lstrip ?? false, rstrip: false,
  normalized: t.normalized ?? false, special: t.special,
}));

const tokenizer = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: added,
  normalizer: { type: 'NFKC' },
  pre_tokenizer: {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Digits', individual_digits: true },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    ],
  },
  post_processor: {
    type: 'Sequence',
    processors: [
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
      {
        type: 'TemplateProcessing',
        single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<|endoftext|>', type_id: 0 } }],
        pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } },
          { SpecialToken: { id: '<|endoftext|>', type_id: 1 } }],
        special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [next], tokens: ['<|endoftext|>'] } },
      },
    ],
  },
  decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  model: {
    type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
  },
};
const config = {
  bos_token: '<|endoftext|>',
  eos_token: '<|endoftext|>',
  unk_token: '<|endoftext|>',
  pad_token: null,
  clean_up_tokenization_spaces: false,
  tokenizer_class: 'GPT2Tokenizer',
  model_max_length: 8192,
  chat_template: "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
};
const out = path.join(here, 'gpt2_style');
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'tokenizer.json'), JSON.stringify(tokenizer, null, 1) + '\n');
fs.writeFileSync(path.join(out, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
console.log(`gpt2_style: ${Object.keys(vocab).length} tokens, ${merges.length} merges, ${added.length} added`);
