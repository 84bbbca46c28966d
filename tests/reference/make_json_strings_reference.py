"""Writes json_strings.json: how Python's json.dumps(obj, indent=2, sort_keys=True) (what PEFT uses for
adapter_config.json) writes strings that stress the escaper: every control character, quote, backslash, DEL,
non-ASCII in each UTF-8 length, characters beyond U+FFFF (surrogate pairs), U+2028. Each case is
{"utf8_hex": the string's UTF-8 bytes in hex, "dumped": json.dumps({"base_model_name_or_path": s}, indent=2,
sort_keys=True)}.

Run with python3 (standard library only): python3 make_json_strings_reference.py
"""
import json
import os

strings = [
    "".join(chr(c) for c in range(1, 32)),  # NUL cannot be in a C string
    "quote \" backslash \\ slash / del \x7f",
    "caf\u00e9 na\u00efve \u00ff",
    "\u0800 \u20ac \u2028 \u2029 \ufeff \uffff",
    "\U00010000 \U0001f600 \U0001f469\u200d\U0001f4bb \U0010ffff",
    "\u4e2d\u6587 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea",
    "tab\tnewline\ncr\rbs\bff\f",
    "",
]
cases = [{"utf8_hex": s.encode("utf-8").hex(),
          "dumped": json.dumps({"base_model_name_or_path": s}, indent=2, sort_keys=True)} for s in strings]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "json_strings.json")
with open(out, "w") as f:
    json.dump(cases, f, indent=1)
    f.write("\n")
