// Encode throughput of transformers.js (@huggingface/transformers), the reference of bench_tokenize.c: the same
// first --bytes of the text encoded as one string with tokenizer.encode (add_special_tokens), --reps times after a
// warm-up; the same output columns. Node runs JavaScript on one thread.
//   node bench_tokenize.mjs NODE_MODULES_DIR --text FILE [--bytes N] [--reps R] NAME=DIR...
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const modules = args.shift();
let text = null, bytes = 1000000, reps = 5;
const toks = [];
while (args.length) {
  const a = args.shift();
  if (a === '--text') text = args.shift();
  else if (a === '--bytes') bytes = Number(args.shift());
  else if (a === '--reps') reps = Number(args.shift());
  else toks.push(a);
}
const { AutoTokenizer, env } = await import(
  pathToFileURL(path.join(modules, '@huggingface/transformers/dist/transformers.node.mjs')).href);
env.allowRemoteModels = false;
env.allowLocalModels = true;
const buf = fs.readFileSync(text).subarray(0, bytes);
let cut = buf.length;
while (cut > 0 && cut < bytes && (buf[cut] & 0xc0) === 0x80) cut--; // whole characters, as bench_tokenize.c
const s = buf.subarray(0, cut).toString('utf8');
console.log('tokenizer\tbytes\tids\tload_s\tencode_s\tMB_per_s');
for (const t of toks) {
  const [name, dir] = t.split('=');
  env.localModelPath = path.dirname(path.resolve(dir)) + '/';
  const t0 = performance.now();
  const tok = await AutoTokenizer.from_pretrained(path.basename(path.resolve(dir)));
  const load = (performance.now() - t0) / 1000;
  let n = tok.encode(s).length; // warm-up
  const times = [];
  for (let r = 0; r < reps; r++) {
    const a = performance.now();
    n = tok.encode(s).length;
    times.push((performance.now() - a) / 1000);
  }
  times.sort((x, y) => x - y);
  const med = times[Math.floor(reps / 2)];
  console.log(`${name}\t${cut}\t${n}\t${load.toFixed(3)}\t${med.toFixed(4)}\t${(cut / med / 1e6).toFixed(2)}`);
}
