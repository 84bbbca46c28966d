"""Renders the cases of expected.json with Python's jinja2 configured as transformers configures it, and reports
where @huggingface/jinja (expected.json) and jinja2 disagree. libpissa follows jinja2 (transformers' engine);
the disagreements are listed in known_differences.json, which tests/test_jinja.c reads.

    python3 check_jinja2.py            # compare; exit 1 if the differences are not the ones listed
    python3 check_jinja2.py --write    # rewrite known_differences.json from what jinja2 renders

Needs jinja2 (pip install jinja2 or apt-get install python3-jinja2); transformers itself is not needed.
"""
import json
import sys
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[3] / "shared" / "data"


class AssistantTracker(jinja2.ext.Extension):
    """transformers' {% generation %} tag, rendering its body (the assistant-mask bookkeeping is left out)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


class Raised(jinja2.exceptions.TemplateError):
    """What the template's own raise_exception(...) throws."""


def environment():
    # transformers.utils.chat_template_utils._compile_jinja_template
    def raise_exception(message):
        raise Raised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def template_text(t):
    if "file" in t:
        return (HERE / t["file"]).read_text(encoding="utf-8")
    return json.loads((SHARED / t["shared"]).read_text(encoding="utf-8"))["chat_template"]


def render_all():
    env = environment()
    templates = json.loads((HERE / "templates.json").read_text(encoding="utf-8"))["templates"]
    conversations = json.loads((HERE / "conversations.json").read_text(encoding="utf-8"))["conversations"]
    out = {}
    for t in templates:
        compiled = env.from_string(template_text(t))
        for conv in conversations:
            for agp in (False, True):
                ctx = dict(messages=conv["messages"], add_generation_prompt=agp, tools=None, documents=None)
                ctx.update(t["context"])
                ctx.update(conv.get("context", {}))
                try:
                    res = {"output": compiled.render(**ctx)}
                except Exception as e:  # the template's raise_exception and runtime errors alike
                    res = {"error": str(e), "raised": isinstance(e, Raised)}
                out[(t["name"], conv["name"], agp)] = res
    return out


def main():
    expected = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))["cases"]
    jinja2_out = render_all()
    diffs = []
    for c in expected:
        key = (c["template"], c["conversation"], c["add_generation_prompt"])
        j = jinja2_out[key]
        same = c.get("output") == j.get("output") and c.get("raised") == j.get("raised")
        if not same:
            diffs.append({"template": key[0], "conversation": key[1], "add_generation_prompt": key[2], "jinja2": j})
    path = HERE / "known_differences.json"
    if "--write" in sys.argv:
        doc = {"_comment": "Cases where Python's jinja2 (transformers) and @huggingface/jinja render differently; "
                           "libpissa must give the jinja2 result. Written by check_jinja2.py --write.",
               "jinja2": jinja2.__version__, "cases": diffs}
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    known = json.loads(path.read_text(encoding="utf-8"))["cases"] if path.exists() else []
    print(f"{len(expected)} cases, {len(diffs)} differ between jinja2 {jinja2.__version__} and "
          f"@huggingface/jinja; {len(known)} listed in known_differences.json")
    for d in diffs:
        print("  differs:", d["template"], d["conversation"], d["add_generation_prompt"])
    return 0 if diffs == known else 1


if __name__ == "__main__":
    sys.exit(main())
