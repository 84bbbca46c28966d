#!/usr/bin/env python3
"""Fine-tunes stories260K (a tiny TinyStories Llama) on Shakespeare with PiSSA, from Python.

    PYTHONPATH=python python3 examples/finetune_stories.py [DATA_DIR] [--out DIR] [--no-numpy]

DATA_DIR holds stories260K/ and tinyshakespeare/ (default: $PISSA_SHARED_DATA_DIR, else ../shared/data). Trains
PiSSA (pissa_niter_4) adapters of rank 16 on all seven projections for 30 AdamW updates of 8 x 256 tokens on the
first 60 KB of the text, prints the held-out loss (the last 20 KB) before and after, saves the residual model and
the adapter in OUT (PEFT layout) and generates a few lines from them. Needs only the standard library; --no-numpy
hides numpy to show it.
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=os.environ.get("PISSA_SHARED_DATA_DIR")
                    or os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--out", help="output folder (default: a temporary one)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--no-numpy", action="store_true", help="run with numpy unimportable")
    args = ap.parse_args()
    if args.no_numpy:
        sys.modules["numpy"] = None
    sys.path.insert(0, os.path.join(HERE, "..", "python"))  # the source tree; an installed package works too
    import pissa

    model_path = os.path.join(args.data, "stories260K", "stories260K.bin")
    tok_path = os.path.join(args.data, "stories260K", "tok512.bin")
    text_path = os.path.join(args.data, "tinyshakespeare", "input.txt")
    for p in (model_path, tok_path, text_path):
        if not os.path.exists(p):
            sys.exit(f"finetune_stories.py: {p} not found (pass the shared data folder as the first argument)")
    with open(text_path, "rb") as f:
        text = f.read()
    train_text, held_text = text[:60000], text[-20000:]
    out = args.out or tempfile.mkdtemp(prefix="pissa-stories-")
    print(f"pissa {pissa.__version__} ({pissa.library_path}), numpy: {pissa.numpy_available()}")

    t0 = time.time()
    tok = pissa.Tokenizer(tok_path)
    model = pissa.Model.load(model_path)
    train = pissa.Dataset.from_text(train_text, tok, 256)
    held = pissa.Dataset.from_text(held_text, tok, 256)
    model.add_adapters("pissa_niter_4", rank=16, targets="all-linear")
    trainer = pissa.Trainer(model, train, args.steps, lr=1e-3, schedule="linear", batch=8, seed=0)
    print(f"{len(train)} training rows, {len(held)} held-out rows of 256 tokens; {model.adapter_count} adapters "
          f"of rank 16 ({time.time() - t0:.2f} s)")
    before = trainer.evaluate(held)  # the PiSSA model starts exactly equal to the base
    print(f"held-out loss before: {before:.4f}")

    t1 = time.time()

    def progress(info):
        if info.step % 5 == 0 or info.step == 1:
            print(f"  step {info.step:3d}  loss {info.loss:.4f}  lr {info.lr:.2e}  |g| {info.grad_norm:.3f}  "
                  f"{info.tokens} tokens  ({time.time() - t1:.1f} s)")
        return False  # True would stop training here

    trainer.train(callback=progress)
    after = trainer.evaluate(held)
    print(f"held-out loss after:  {after:.4f}  ({args.steps} updates in {time.time() - t1:.1f} s)")

    # The residual model W - s*B0*A0 and the trained adapter: together a PEFT folder any loader can use.
    model.save(out)
    trainer.save_peft(out, model.peft_config(init_lora_weights="true", base_model_name_or_path=out))
    with pissa.Generator(out, tok, adapter=out) as g:
        sample = g.generate("ROMEO:", steps=60, temperature=0.0)
    print(f"wrote {out}; greedy sample from it:\n{sample}")


if __name__ == "__main__":
    main()
