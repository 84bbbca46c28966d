"""The renders of bench_chat (the pairs it writes), timed with Python's jinja2 configured as transformers configures
it: compiled once, rendered REPS times (transformers caches the compiled template too).

    python3 bench/bench_chat_jinja2.py PAIRS.tsv REPS      # needs jinja2
"""
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHAT = HERE.parent / "tests" / "reference" / "chat"
sys.path.insert(0, str(CHAT))
from check_jinja2 import environment  # noqa: E402


def main():
    pairs, reps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    env = environment()
    templates = {t["name"]: t for t in json.loads((CHAT / "templates.json").read_text())["templates"]}
    convs = {c["name"]: c for c in json.loads((CHAT / "conversations.json").read_text())["conversations"]}
    for line in Path(pairs).read_text().strip().split("\n"):
        name, conv, path = line.split("\t")[:3]
        t = templates[name]
        text = (CHAT / t["file"]).read_text() if "file" in t else json.loads(Path(path).read_text())["chat_template"]
        compiled = env.from_string(text)
        ctx = dict(messages=convs[conv]["messages"], add_generation_prompt=True, tools=None, documents=None)
        ctx.update(t["context"])
        compiled.render(**ctx)
        t0 = time.perf_counter()
        for _ in range(reps):
            compiled.render(**ctx)
        print(f"{name}\t{1e6 * (time.perf_counter() - t0) / reps:.3f}")


if __name__ == "__main__":
    main()
