// Reference ids and decodes for tests/test_hf_tokenizer.c, from transformers.js (@huggingface/transformers, a port
// of Hugging Face tokenizers) on the real tokenizers in ../shared/data/tokenizers/{llama2,llama3,qwen3} and on
// gpt2_style/ (built by make_gpt2_style.mjs). Writes fixtures/<name>.json; see README.md. Deterministic: the same
// package version gives the same bytes.
//   node make_reference.mjs [SHARED_DATA_DIR] [OUT_DIR]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoTokenizer, env } from '@huggingface/transformers';

const here = path.dirname(fileURLToPath(import.meta.url));
const data = path.resolve(process.argv[2] ?? path.join(here, '../../../../shared/data'));
const outDir = path.resolve(process.argv[3] ?? path.join(here, 'fixtures'));
const pkg = JSON.parse(fs.readFileSync(path.join(here, 'node_modules/@huggingface/transformers/package.json'), 'utf8'));
env.allowRemoteModels = false;
env.allowLocalModels = true;

const shakespeare = fs.readFileSync(path.join(data, 'tinyshakespeare/input.txt'), 'utf8');
if (!/^[\x00-\x7f]*$/.test(shakespeare)) throw new Error('tinyshakespeare is expected to be ASCII (byte offsets)');

// mulberry32: a small seeded generator, so the strings are the same on every run.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- the strings ----

const pools = {
  cjk: ['日本語', '中文文本', '漢字', '東京タワー', 'ひらがな', 'カタカナ', '你好，世界！', '。、「」', '我爱自然语言处理'],
  hangul: ['한국어', '안녕하세요', '\u1100\u1161\u11a8', '\u110b\u1161\u11ab', '각', '한글 자모'],
  emoji: ['👍', '👍🏽', '👨‍👩‍👧', '👩🏾‍💻', '🏳️‍🌈', '❤️', '🇫🇷🇯🇵', '😀😃😄', '✋🏿', '🧑‍🤝‍🧑', '👋🏻👋🏼👋🏽👋🏾👋🏿'],
  combining: ['e\u0301', 'é', 'n\u0303', 'a\u0308\u0304', 'A\u030a', '\u212b', '\u1e9b\u0323', 'q\u0307\u0323',
    'Z\u0351\u036b\u0343\u036a\u0302', 'o\u0328\u0304', '\u0301'],
  compat: ['ﬁ', 'ﬀ', '①②③', 'Ｆｕｌｌｗｉｄｔｈ', '㎏', 'ｶﾀｶﾅ', '²³', '½', 'Ⅻ', '™', '…', 'ﷺ', 'ｱｲｳ', '㈱', 'ℌ', '\u00a0'],
  arabic: ['العربية', 'مرحبا بالعالم', '٠١٢٣٤٥٦٧٨٩', 'ـ', 'كتاب'],
  hebrew: ['עברית', 'שלום עולם', 'בְּרֵאשִׁית'],
  devanagari: ['हिन्दी', 'नमस्ते दुनिया', '०१२३४५६७८९', 'क्षत्रिय', 'ज़'],
  other: ['Ελληνικά', 'русский текст', 'Ünïcödé', 'ß', 'İstanbul', 'ǅ', 'ΣΑΣ', 'ﬆ', 'ภาษาไทย', 'Ɐ', 'ĳ'],
  digits: ['0', '7', '42', '123', '2024', '3.14159', '1,000,000', '007', '12345678901234567890', '٣', '１２３', '9 9'],
  ws: [' ', '  ', '   ', '\t', '\t\t', '\n', '\n\n', '\n\n\n', '\r\n', '\r\n\r\n', ' \n', '\u00a0', '\u3000', '\u2003',
    ' \t \n', '\u0085', '\u2028', '\ufeff', '\u180e', '\u200b', '\v', '\f'],
  punct: ['!', '?', '...', '—', '–', '"', "'", '«»', '(', ')', '[]', '{}', '<>', '@#$%^&*', '¿¡', '、', '·', '_', '~',
    '\\', '/', '|', '``', "''"],
  contractions: ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re", "n't", "don't", "I'M", "it's",
    "we'VE", "'"],
  words: ['Hello', 'world', 'the', ' the', 'The', 'tokenizer', 'ing', 'ization', 'Café', 'naïve', 'résumé', 'x', 'a',
    'I', 'supercalifragilisticexpialidocious', 'HTTP', 'camelCase', 'snake_case', 'UPPER'],
  code: ['def f(x):\n    return x', 'int main(void) { return 0; }', 'https://example.com/a?b=c&d=e', 'foo_bar-baz',
    '#include <stdio.h>', 'C++', 'a==b', '    indented', '{"key": [1, 2.5, null]}', '$ ls -la | grep .txt'],
};

// Code points in old, fully assigned ranges (so every Unicode version agrees on their classes).
const ranges = [[0x20, 0x7e], [0xc0, 0xff], [0x391, 0x3a9], [0x3b1, 0x3c9], [0x410, 0x44f], [0x5d0, 0x5ea],
  [0x621, 0x63a], [0x641, 0x64a], [0x905, 0x939], [0x966, 0x96f], [0xe01, 0xe30], [0xac00, 0xd7a3],
  [0x4e00, 0x9fa5], [0x3041, 0x3096], [0x30a1, 0x30fa], [0x1f600, 0x1f64f], [0x300, 0x36f], [0x2010, 0x2027],
  [0x2030, 0x205e], [0x2190, 0x21ff], [0x2200, 0x22ff], [0x2500, 0x257f], [0xff01, 0xff5e], [0x2460, 0x24ff]];

function specialStrings(tok) {
  const out = [];
  for (const t of tok._tokenizer.added_tokens) out.push(t.content);
  return out;
}

function handWritten(specials) {
  const s = specials;
  const a = s[0], b = s[Math.min(1, s.length - 1)], c = s[s.length - 1];
  return [
    '', ' ', '  ', '\n', '\n\n\n', '\t', '\r\n', ' \r\n ', 'a', ' a', 'a ', '  leading', 'trailing  ', ' both ',
    'Hello world', 'Hello  world', 'Hello\tworld', 'Hello\nworld', 'Hello\r\nworld\r\n', 'Hello\n\n\nworld',
    "I'm here, aren't you? We'll see; they'd've said 'no'.", "DON'T SHOUT'S", 'The year 2024 had 366 days.',
    '3.14159265358979323846', '1234567890123', 'a1b2c3', '   123   ', 'x=1+2*3', '100%', '$1,000.00',
    a, b, c, a + a, a + b + c, ' ' + a, a + ' ', 'Hello' + a + 'world', 'Hello ' + a + ' world',
    'Hello  ' + a + '  world', a + 'Hello', 'Hello' + c, a.slice(0, -1), a.slice(1), a.slice(0, -1) + a,
    '<' + a, a + '>', a.toUpperCase(), '<s>', '</s>', '<unk>', '<|im_start|>user\nHi<|im_end|>\n',
    '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>', '<think>\n\n</think>\n\n',
    '<mask>', 'a <mask> b', 'a  <mask>', '<tool_call>x</tool_call>', '＜ｎｏｔｅ＞ and <note>',
    '日本語', '👨‍👩‍👧‍👦 family', 'e\u0301 vs é', 'ﬁne ﬂour', 'Ａ full-width', '①②③', 'İi̇Iı', 'ẞß',
    'Ω Ω Å Å', '\u1100\u1161\u11a8 vs 각', 'مرحبا', 'שלום', 'नमस्ते', 'x\u0085y', 'x\ufeffy', 'x\u180ey', 'x\u2028y',
    '\u00a0\u00a0', ' \u3000 ', '...', '!!!', '???', '---', '___', '"quoted"', "'single'", '(paren)',
    'end.', 'end .', 'a , b', "do n't", 'it \'s', 'they \'re', 'I \'m', 'we \'ve', 'x ! y ? z .',
    'a'.repeat(300), ' '.repeat(300), '\n'.repeat(50), 'ab'.repeat(100), '12'.repeat(50), '😀'.repeat(20),
  ];
}

function randomStrings(seed, n) {
  const r = rng(seed);
  const names = Object.keys(pools);
  const out = [];
  for (let i = 0; i < n; i++) {
    let s = '';
    const parts = 1 + Math.floor(r() * 6);
    for (let k = 0; k < parts; k++) {
      const kind = r();
      if (kind < 0.75) {
        const pool = pools[names[Math.floor(r() * names.length)]];
        s += pool[Math.floor(r() * pool.length)];
      } else {
        const len = 1 + Math.floor(r() * 8);
        for (let j = 0; j < len; j++) {
          const [lo, hi] = ranges[Math.floor(r() * ranges.length)];
          s += String.fromCodePoint(lo + Math.floor(r() * (hi - lo + 1)));
        }
      }
      const sep = r();
      s += sep < 0.4 ? '' : sep < 0.8 ? ' ' : pools.ws[Math.floor(r() * pools.ws.length)];
    }
    out.push(s);
  }
  return out;
}

function slices(seed, n) {
  const r = rng(seed);
  const out = [];
  for (let i = 0; i < n; i++) {
    const len = Math.floor(Math.exp(r() * Math.log(400))); // 1 .. 400 bytes, log-uniform
    const off = Math.floor(r() * (shakespeare.length - len));
    out.push([off, len]);
  }
  return out;
}

// transformers.js deviates from the Rust library on these (docs/tokenizers.md): its Digits pre-tokenizer splits
// ASCII digits only (Rust: every numeric character) and its ByteLevel regex uses JavaScript's \s (with U+FEFF,
// without U+0085). Such strings are left out for the tokenizer that has those pre-tokenizers.
function deviates(name, s) {
  if (name !== 'gpt2_style') return false;
  const n = s.normalize('NFKC');
  return /(?![0-9])\p{N}/u.test(n) || /[\u0085\ufeff]/.test(n);
}

// ---- running transformers.js ----

function fnv1a64(ids) {
  let h = 0xcbf29ce484222325n;
  for (const id of ids) {
    for (let k = 0; k < 4; k++) {
      h ^= BigInt((id >>> (8 * k)) & 0xff);
      h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
    }
  }
  return h.toString(16).padStart(16, '0');
}

async function run(name, dir, seed) {
  env.localModelPath = path.dirname(dir) + '/';
  const tok = await AutoTokenizer.from_pretrained(path.basename(dir));
  const enc = (s, add) => Array.from(tok.encode(s, { add_special_tokens: add }), Number);
  const dec = (ids, skip) => (ids.length ? tok.decode(ids, { skip_special_tokens: skip }) : '');

  // the template: with special tokens = before + without + after, for every string
  const probe = 'probe';
  const bare = enc(probe, false), full = enc(probe, true);
  let at = -1;
  for (let i = 0; i + bare.length <= full.length && at < 0; i++)
    if (bare.every((x, k) => full[i + k] === x)) at = i;
  const before = full.slice(0, at), after = full.slice(at + bare.length);
  const probeText = dec(full, true);
  const probeFull = dec(full, false);
  const dBefore = probeFull.slice(0, probeFull.indexOf(probeText));
  const dAfter = probeFull.slice(probeFull.indexOf(probeText) + probeText.length);

  const cases = [];
  const add = (c, s) => {
    if (deviates(name, s)) return;
    const ids = enc(s, false), withSpecial = enc(s, true);
    const expect = [...before, ...ids, ...after];
    if (withSpecial.length !== expect.length || withSpecial.some((x, i) => x !== expect[i]))
      throw new Error(`${name}: the template does not hold for ${JSON.stringify(s)}`);
    const d = dec(withSpecial, false), k = dec(withSpecial, true);
    c.ids = ids;
    c.s = k === s ? 1 : k;
    if (d !== dBefore + k + dAfter) c.d = d === s ? 1 : d; // else implied: the template's text around k
    cases.push(c);
  };
  for (const [off, len] of slices(seed, 700)) add({ slice: [off, len] }, shakespeare.slice(off, off + len));
  const specials = specialStrings(tok);
  for (const s of handWritten(specials)) add({ text: s }, s);
  for (const s of randomStrings(seed + 1, 1000)) add({ text: s }, s);
  for (const s of randomStrings(seed + 2, 150).map((x, i) => x + specials[i % specials.length] + x)) add({ text: s }, s);

  const whole = enc(shakespeare, true);
  const lines = cases.map((c) => JSON.stringify(c));
  const head = {
    tokenizer: name,
    generator: `make_reference.mjs with @huggingface/transformers ${pkg.version}`,
    before, after, d_before: dBefore, d_after: dAfter,
    whole_text: { bytes: Buffer.byteLength(shakespeare), count: whole.length, fnv1a64: fnv1a64(whole) },
  };
  const text = JSON.stringify(head).slice(0, -1) + ',"cases":[\n' + lines.join(',\n') + '\n]}\n';
  fs.writeFileSync(path.join(outDir, `${name}.json`), text);
  console.log(`${name}: ${cases.length} strings, ${cases.reduce((n, c) => n + c.ids.length, 0)} ids, ` +
              `${(text.length / 1024).toFixed(0)} KiB`);
}

fs.mkdirSync(outDir, { recursive: true });
await run('llama2', path.join(data, 'tokenizers/llama2'), 2);
await run('llama3', path.join(data, 'tokenizers/llama3'), 3);
await run('qwen3', path.join(data, 'tokenizers/qwen3'), 5);
await run('gpt2_style', path.join(here, 'gpt2_style'), 7);
