"""Small templates, one Jinja construct each, rendered by Python's jinja2 configured as transformers configures it
(see check_jinja2.py); writes constructs.json, which tests/test_jinja.c renders with libpissa and compares byte for
byte. An error case records jinja2's exception; libpissa must fail too, and where the case names a substring
('error_has'), its message must contain it.

    python3 make_constructs_reference.py     # needs jinja2 (pip install jinja2 or apt-get install python3-jinja2)
"""
import json
from pathlib import Path

import jinja2

from check_jinja2 import environment

HERE = Path(__file__).resolve().parent

CTX = {
    "s": "abc", "u8": "héllo wörld", "n": 7, "f": 2.5, "neg": -3, "t": True, "z": 0, "none": None,
    "l": [3, 1, 2], "strs": ["b", "A", "c"], "d": {"b": 1, "a": 2},
    "msgs": [{"role": "system", "content": "S"}, {"role": "user", "content": " hi "},
             {"role": "assistant", "content": "yo", "x": 1}],
    "nested": {"a": {"b": [1, {"c": "deep"}]}}, "empty": [], "ws": "  a b \n c  ", "fl": [1.0, 0.1, 1e-7, 1e20],
}

# (name, template) rendered with CTX; (name, template, error_has) must fail with that text in the message.
CASES = [
    # text, output, comments, whitespace control
    ("text", "plain text"),
    ("output", "{{ s }}|{{ n }}|{{ f }}|{{ t }}|{{ none }}|{{ l }}|{{ d }}|{{ nested }}"),
    ("comment", "a{# a comment #}b"),
    ("minus_left", "a  \n  {{- s }}"),
    ("minus_right", "{{ s -}}  \n  b"),
    ("minus_block", "a\n  {%- if t -%}\n  x  \n{%- endif -%}\n  b"),
    ("minus_comment", "a  {#- c -#}  b"),
    ("trim_blocks", "{% if t %}\nyes\n{% endif %}\nend"),
    ("trim_blocks_not_var", "{{ s }}\nnext"),
    ("lstrip_blocks", "line\n    {% if t %}\n    x\n    {% endif %}\nend"),
    ("lstrip_not_var", "   {{ s }}\n"),
    ("lstrip_mid_line", "a  {% if t %}b{% endif %}  c"),
    ("plus_disables_lstrip", "x\n    {%+ if t %}y{% endif %}"),
    ("plus_disables_trim", "{% if t +%}\ny{% endif %}"),
    ("comment_lstrip_trim", "a\n   {# c #}\nb"),
    ("crlf_source", "{% if t %}\r\nA\r\n{% endif %}\r\nB"),
    ("trailing_newline_dropped", "x\n"),
    ("two_trailing_newlines", "x\n\n"),
    ("raw", "{% raw %}{{ not evaluated }}{% endraw %}"),
    ("raw_trim", "{%- raw -%}  {{ x }}  {%- endraw -%}"),
    # literals
    ("string_escapes", "{{ 'a\\nb\\tc\\\\d\\'e' }}|{{ \"q\\\"q\" }}|{{ '\\u00e9\\x41\\101' }}|{{ 'keep \\d' }}"),
    ("adjacent_strings", "{{ 'a' 'b' \"c\" }}"),
    ("numbers", "{{ 1_000 }} {{ 1.5e3 }} {{ 0.1 }} {{ 1e-7 }} {{ 1e16 }} {{ 123456789012345678 }} {{ -0.0 }}"),
    ("literals", "{{ [1, 'a', none, true, 1.5, [2], {'k': False}] }} {{ (1,) }} {{ () }} {{ (1, 2) }} {{ {} }}"),
    ("float_repr", "{{ fl }} {{ 1/3 }} {{ 2/3 }} {{ 10/4 }} {{ 1e300*10 }}"),
    # operators
    ("arith", "{{ 7 + 2 }} {{ 7 - 9 }} {{ 7 * 3 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2 ** 3 ** 2 }}"),
    ("float_arith", "{{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 0.1 + 0.2 }} {{ 3 * 1.5 }} {{ true + 1 }}"),
    ("unary", "{{ -n }} {{ +n }} {{ -f }} {{ - -n }} {{ not t }} {{ not none }}"),
    ("concat", "{{ s ~ n ~ none ~ t ~ undefined_var }}"),
    ("string_ops", "{{ s + 'd' }} {{ s * 2 }} {{ 2 * 'x' }} {{ l + [4] }} {{ l * 2 }}"),
    ("compare", "{{ 1 < 2 }} {{ 2 <= 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ 1 != 2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ none == none }} {{ 'a' == 1 }}"),
    ("in", "{{ 1 in l }} {{ 5 not in l }} {{ 'a' in d }} {{ 'b' in s }} {{ 'x' in s }} {{ '' in s }} {{ 'b' in undefined_var }}"),
    ("and_or", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ none or empty or 'z' }} {{ s and n }} {{ z and s }}"),
    ("ternary", "{{ 'a' if t else 'b' }}|{{ 'a' if z else 'b' }}|{{ 'a' if z }}|{{ 1 if z else 2 if t else 3 }}"),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }} {{ 'a' ~ (1 + 2) }} {{ 2 * 3 ~ 'x' }} {{ not 1 == 2 }} {{ l | length + 1 }} {{ -l[0] }}"),
    # attributes and subscripts
    ("attr_item", "{{ d.a }} {{ d['b'] }} {{ nested.a.b[1].c }} {{ msgs[1].role }} {{ msgs[-1]['content'] }} {{ l[0] }} {{ s[1] }} {{ u8[1] }}"),
    ("missing_attr", "[{{ d.zzz }}][{{ d['zzz'] }}][{{ l[10] }}][{{ msgs[0].x }}]"),
    ("dict_method_attr", "{{ d.items() | list }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('q', 5) }} {{ d.get('q') }}"),
    ("slices", "{{ l[1:] }} {{ l[:2] }} {{ l[::-1] }} {{ l[-2:] }} {{ l[::2] }} {{ l[5:] }} {{ s[::-1] }} {{ u8[1:4] }} {{ u8[::-1] }} {{ l[:-1] }} {{ s[-100:100] }}"),
    # statements
    ("if_elif_else", "{% for x in [0, 1, 2] %}{% if x == 0 %}zero{% elif x == 1 %}one{% else %}many{% endif %};{% endfor %}"),
    ("for_loop_vars", "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}[{{ loop.previtem }}|{{ loop.nextitem }}]{{ loop.cycle('a', 'b') }};{% endfor %}"),
    ("for_else", "{% for x in empty %}x{% else %}none{% endfor %}{% for x in l %}{% else %}never{% endfor %}"),
    ("for_filter", "{% for m in msgs if m.role != 'system' %}{{ loop.index }}:{{ m.role }}/{{ loop.length }} {% endfor %}"),
    ("for_dict", "{% for k in d %}{{ k }}{% endfor %} {% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %} {% for k, v in d | items %}{{ k }}{{ v }}{% endfor %}"),
    ("for_string", "{% for ch in u8 %}[{{ ch }}]{% endfor %}"),
    ("for_unpack", "{% for a, b in [[1, 2], (3, 4)] %}{{ a }}{{ b }}{% endfor %}"),
    ("for_nested_loop", "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}"),
    ("for_scope", "{% set x = 'outer' %}{% for i in [1, 2] %}{% if i == 2 %}[{{ x }}]{% endif %}{% set x = i %}{% endfor %}[{{ x }}]"),
    ("break_continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
    ("set", "{% set a = 1 %}{% set b, c = 2, 3 %}{% set e = (4, 5) %}{{ a }}{{ b }}{{ c }}{{ e }}"),
    ("set_block", "{% set x %}  inner {{ s }}  {% endset %}[{{ x }}]{% set y | upper %}up{% endset %}{{ y }}"),
    ("filter_block", "{% filter upper %}hello {{ s }}{% endfilter %}{% filter replace('a', 'o') | trim %}  banana  {% endfilter %}"),
    ("namespace", "{% set ns = namespace(count=0, found=false) %}{% for m in msgs %}{% set ns.count = ns.count + 1 %}{% if m.role == 'user' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.found }} {{ ns.missing is defined }}"),
    ("namespace_from_dict", "{% set ns = namespace(d) %}{{ ns.a }}{{ ns.b }}"),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }} {{ greet() }}"),
    ("macro_varargs_kwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}"),
    ("macro_caller", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ s }}{% endcall %}"),
    ("macro_caller_args", "{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}{% call(item) each(l) %}<{{ item }}>{% endcall %}"),
    ("macro_sees_globals", "{% set g = 'G' %}{% macro m() %}{{ g }}{{ s }}{% endmacro %}{{ m() }}"),
    ("macro_recursion", "{% macro f(k) %}{% if k > 0 %}{{ k }}{{ f(k - 1) }}{% endif %}{% endmacro %}{{ f(4) }}"),
    ("dict_many_keys", "{% set ns = namespace(d={}) %}{% for i in range(40) %}{% set ns.d = dict(ns.d, **{('k' ~ i): i}) %}{% endfor %}{{ ns.d | length }} {{ ns.d['k17'] }} {{ 'k39' in ns.d }} {{ 'k40' in ns.d }} {{ ns.d.get('k0') }} {{ (ns.d | list)[:3] }} {{ ns.d.k33 }}"),
    ("dict_number_keys", "{% set d2 = {1: 'int', 'a': 'str', (1, 2): 'tuple', none: 'none'} %}{{ d2[1.0] }} {{ d2[true] }} {{ d2[(1, 2)] }} {{ d2[none] }} {{ 1.0 in d2 }} {{ d2 | length }}"),
    ("dict_key_replaced_in_place", "{{ dict(dict(a=1, b=2), a=3) }} {{ {'x': 1, 'x': 2} }}"),
    # filters
    ("filter_trim", "[{{ ws | trim }}][{{ 'xxaxx' | trim('x') }}][{{ none | trim }}]"),
    ("filter_case", "{{ s | upper }} {{ 'HeLLo wOrld' | lower }} {{ 'hello big-world (x)' | title }} {{ 'hELLO' | capitalize }}"),
    ("filter_length", "{{ l | length }} {{ s | count }} {{ u8 | length }} {{ d | length }} {{ undefined_var | length }}"),
    ("filter_default", "{{ undefined_var | default('dflt') }} {{ none | default('x') }} {{ '' | default('e', true) }} {{ s | d('q') }} {{ z | default(5, boolean=true) }}"),
    ("filter_join", "{{ l | join(',') }} {{ strs | join }} {{ msgs | join(' ', attribute='role') }} {{ [1, none, 'x'] | join('-') }}"),
    ("filter_replace", "{{ 'aaa' | replace('a', 'b') }} {{ 'aaa' | replace('a', 'b', 2) }} {{ 'abc' | replace('', '-') }}"),
    ("filter_first_last", "{{ l | first }} {{ l | last }} {{ s | first }} {{ s | last }} [{{ empty | first }}]"),
    ("filter_list", "{{ s | list }} {{ d | list }} {{ (1, 2) | list }}"),
    ("filter_reverse", "{{ l | reverse | list }} {{ u8 | reverse }}"),
    ("filter_numbers", "{{ '42' | int + 1 }} {{ '3.9' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.7 | int }} {{ '2.5' | float }} {{ 'q' | float }} {{ 3 | float }} {{ -3 | abs }} {{ -2.5 | abs }} {{ true | int }}"),
    ("filter_round", "{{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 3 | round }} {{ 2.1 | round(0, 'ceil') }} {{ 2.9 | round(method='floor') }} {{ 2.675 | round(2) }}"),
    ("filter_string", "{{ 3 | string }} {{ 3.0 | string }} {{ none | string }} {{ l | string }} {{ (1 | string) + 'x' }}"),
    ("filter_tojson", "{{ d | tojson }} {{ msgs[2] | tojson }} {{ 'é\"\\n<>&\\'' | tojson }} {{ fl | tojson }} {{ none | tojson }} {{ [true, false] | tojson }} {{ {1: 2} | tojson }}"),
    ("filter_tojson_ascii", "{{ '\\x7f\\x01\u00e9\U0001f600' | tojson }} {{ '\\x7f\\x01\u00e9\U0001f600' | tojson(ensure_ascii=True) }}"),
    ("filter_tojson_indent", "{{ nested | tojson(indent=2) }}\n{{ [] | tojson(indent=4) }}\n{{ {'a': [], 'b': {}} | tojson(indent=2) }}"),
    ("filter_items_dictsort", "{{ d | items | list }} {{ d | dictsort }} {{ d | dictsort(by='value') }} {{ d | dictsort(reverse=true) }}"),
    ("filter_sort", "{{ l | sort }} {{ strs | sort }} {{ strs | sort(case_sensitive=true) }} {{ l | sort(reverse=true) }} {{ msgs | sort(attribute='role') | map(attribute='role') | list }}"),
    ("filter_attribute_paths", "{{ [{'d': {'p': 2}}, {'d': {'p': 1}}] | sort(attribute='d.p') | map(attribute='d.p') | list }} {{ [[1, 2], [0, 5]] | map(attribute='1') | list }} {{ nested | attr('a') }}"),
    ("filter_sort_equal_uncomparable", "{{ [none, none] | sort }} {{ [undefined_a, undefined_b] | sort }} {{ [{'a': 1}, {'a': 1}] | sort }}"),
    ("filter_unique_minmax_sum", "{{ [1, 2, 1, 3] | unique | list }} {{ ['a', 'A', 'b'] | unique | list }} {{ l | min }} {{ l | max }} {{ l | sum }} {{ msgs | sum(attribute='x', start=10) if false else 0 }}"),
    ("filter_select", "{{ msgs | selectattr('role', 'equalto', 'user') | list | length }} {{ msgs | rejectattr('role', 'eq', 'user') | map(attribute='role') | join(',') }} {{ msgs | selectattr('x', 'defined') | list | length }} {{ [0, 1, 2, 3] | select('odd') | list }} {{ [0, 1, 2] | reject | list }} {{ [0, 1, ''] | select | list }}"),
    ("filter_map", "{{ msgs | map(attribute='role') | join('/') }} {{ strs | map('upper') | list }} {{ msgs | map(attribute='x', default='-') | list }} {{ ['1', '2'] | map('int') | sum }}"),
    ("filter_indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}|{{ 'x\\ny' | indent('> ') }}"),
    ("filter_escape_safe", "{{ '<a href=\"x\">&\\'</a>' | e }} {{ '<b>' | escape }} {{ '<i>' | safe }}"),
    ("filter_format", "{{ '%s-%d-%.2f-%%' | format('a', 3, 2.5) }} {{ '%s' % 5 }} {{ '%s and %s' % ('x', 'y') }}"),
    ("filter_wordcount_attr", "{{ 'a b  c\\nd' | wordcount }} {{ msgs[0] | attr('role') }}"),
    # tests
    ("tests_types", "{{ s is string }}{{ n is number }}{{ f is number }}{{ t is number }}{{ n is integer }}{{ f is integer }}{{ f is float }}{{ t is boolean }}{{ n is boolean }}{{ d is mapping }}{{ l is mapping }}{{ l is sequence }}{{ s is sequence }}{{ d is sequence }}{{ s is iterable }}{{ n is iterable }}"),
    ("tests_values", "{{ none is none }}{{ z is none }}{{ t is true }}{{ 1 is true }}{{ false is false }}{{ 0 is false }}{{ n is odd }}{{ n is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(2) }}{{ 'ab' is lower }}{{ 'AB' is upper }}{{ 1 is sameas 1 }}{{ none is sameas none }}"),
    ("tests_defined", "{{ s is defined }}{{ undefined_var is defined }}{{ undefined_var is undefined }}{{ d.zzz is defined }}{{ msgs[2].x is defined }}{{ msgs[0].x is not defined }}{{ none is defined }}"),
    ("tests_compare", "{{ 1 is eq 1 }}{{ 1 is equalto 2 }}{{ 1 is ne 2 }}{{ 1 is lt 2 }}{{ 2 is le 2 }}{{ 3 is gt 2 }}{{ 2 is ge 3 }}{{ 1 is in l }}{{ 'a' is in 'cat' }}{{ 'x' is in d }}"),
    ("tests_callable_filter", "{{ range is callable }}{{ s is callable }}{{ 'upper' is filter }}{{ 'nope' is filter }}{{ 'odd' is test }}"),
    ("is_not_precedence", "{{ not none is none }} {{ n is not none and n > 3 }} {{ (n is odd) == true }}"),
    # str methods
    ("str_strip", "[{{ ws.strip() }}][{{ ws.lstrip() }}][{{ ws.rstrip() }}][{{ '\\n\\nx\\n'.strip('\\n') }}][{{ 'abcba'.strip('ab') }}][{{ u8.strip('hd') }}]"),
    ("str_split", "{{ 'a,b,,c'.split(',') }} {{ ws.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ '<think>x</think>y'.split('</think>')[-1] }} {{ 'x'.split('y') }} {{ ''.split() }}"),
    ("str_split_maxsplit", "|{{ ' 1 2 3 '.split(none, 0) }}|{{ ' 1 2 3 '.split(none, 1) }}|{{ ' 1 2 3 '.split(' ', 1) }}|{{ 'a b c'.rsplit(none, 1) if false else '' }}"),
    ("str_startswith", "{{ s.startswith('ab') }} {{ s.endswith('bc') }} {{ s.startswith(('x', 'a')) }} {{ s.endswith('x') }}"),
    ("str_methods", "{{ s.upper() }} {{ 'AbC'.lower() }} {{ 'hello world'.title() }} {{ 'they\\'re'.title() }} {{ 'hELLO'.capitalize() }} {{ 'a-b'.replace('-', '+') }} {{ 'aXbXc'.replace('X', '', 1) }}"),
    ("str_find_count", "{{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'héllo'.find('l') }} {{ 'banana'.count('an') }} {{ ', '.join(['a', 'b']) }}"),
    ("str_format", "{{ '{} and {}'.format('x', 2) }} {{ '{1}{0}'.format('a', 'b') }} {{ '{name}!'.format(name='N') }} {{ '{{literal}}'.format() }}"),
    ("str_predicates", "{{ '123'.isdigit() }}{{ '12a'.isdigit() }}{{ 'abc'.isalpha() }}{{ 'ab1'.isalnum() }}{{ '  '.isspace() }}{{ 'AB'.isupper() }}{{ 'ab'.islower() }}{{ ''.isdigit() }}"),
    ("str_splitlines", "{{ 'a\\nb\\r\\nc\\rd'.splitlines() }}"),
    ("list_methods", "{{ l.index(2) }} {{ [1, 1, 2].count(1) }}"),
    # globals
    ("range", "{{ range(3) | list }} {{ range(1, 4) | list }} {{ range(10, 0, -3) | list }} {{ range(0) | list }}"),
    ("dict_global", "{{ dict(a=1, b='x') }} {{ dict(d, c=3) }}"),
    ("raise_exception", "{{ raise_exception('Roles must alternate!') }}", "Roles must alternate!"),
    # undefined
    ("undefined_render", "[{{ undefined_var }}][{{ undefined_var ~ 'x' }}][{% for x in undefined_var %}x{% endfor %}][{{ undefined_var | list }}]"),
    ("undefined_truth", "{{ 'y' if undefined_var else 'n' }} {{ not undefined_var }} {{ undefined_var == undefined_var }} {{ undefined_var is none }}"),
    ("undefined_attr_error", "{{ undefined_var.x }}", "'undefined_var' is undefined"),
    ("undefined_chain_error", "{{ d.zzz.y }}", "has no attribute 'zzz'"),
    ("undefined_call_error", "{{ undefined_var() }}", "'undefined_var' is undefined"),
    ("undefined_item_error", "{{ undefined_var[0] }}", "'undefined_var' is undefined"),
    ("undefined_add_error", "{{ undefined_var + 1 }}", "'undefined_var' is undefined"),
    ("undefined_method_error", "{{ d.zzz.strip() }}", "has no attribute 'zzz'"),
    ("undefined_tojson_error", "{{ undefined_var | tojson }}", "not JSON serializable"),
    # runtime errors
    ("concat_binds_tighter_than_add", "{{ 'a' ~ 1 + 2 }}", "can only concatenate str"),
    ("type_error_add", "{{ 'a' + 1 }}", "can only concatenate str"),
    ("type_error_compare", "{{ 'a' < 1 }}", "not supported between"),
    ("zero_division", "{{ 1 / 0 }}", "division by zero"),
    ("zero_modulo", "{{ 1 % 0 }}", "modulo by zero"),
    ("not_iterable", "{% for x in n %}{% endfor %}", "not iterable"),
    ("none_not_iterable", "{% for x in none %}{% endfor %}", "not iterable"),
    ("in_none", "{{ 'a' in none }}", "not iterable"),
    ("in_string_int", "{{ 1 in s }}", "requires string as left operand"),
    ("unpack_error", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", "too many values to unpack"),
    ("set_attr_not_namespace", "{% set d.x = 1 %}", "non-namespace"),
    ("call_non_callable", "{{ s() }}", "not callable"),
    ("len_of_int", "{{ n | length }}", "has no len()"),
    ("unknown_filter", "{{ s | nosuchfilter }}", "nosuchfilter"),
    ("unknown_test", "{{ s is nosuchtest }}", "nosuchtest"),
    ("strip_on_int", "{{ n.strip() }}", "has no attribute 'strip'"),
    ("list_append_unsafe", "{{ l.append(4) }}", "append"),
]


def main():
    env = environment()
    ctx_text = json.dumps(CTX, ensure_ascii=False)
    out = []
    for case in CASES:
        name, source = case[0], case[1]
        c = {"name": name, "template": source}
        try:
            c["output"] = env.from_string(source).render(**json.loads(ctx_text))
            if len(case) > 2:
                raise SystemExit(f"{name}: expected an error, rendered {c['output']!r}")
        except (jinja2.exceptions.TemplateError, TypeError, ValueError, ZeroDivisionError, AttributeError) as e:
            if len(case) < 3:
                raise SystemExit(f"{name}: jinja2 failed: {type(e).__name__}: {e}")
            c["error"] = f"{type(e).__name__}: {e}"
            c["error_has"] = case[2]
        out.append(c)
    doc = {"_comment": "Written by make_constructs_reference.py with jinja2 " + jinja2.__version__ +
                       " configured as transformers configures it. Every case renders with 'context'.",
           "context": ctx_text, "cases": out}
    (HERE / "constructs.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(out)} cases -> constructs.json")


if __name__ == "__main__":
    main()
