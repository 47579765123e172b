"""The Starlark prelude: the builtins a script sees, written in Starlark over the session's `_sb_*` callables.

Runs before every script in the same interpreter (see `session.Session.execute`).
"""

from __future__ import annotations

RESERVED = "_sb_"
"""Prefix of the names the prelude uses internally; scripts may not use such names at all, so
they cannot rebind what the builtins rely on (and a script's own helper cannot collide)."""

FAIL_HEAD_BYTES = 8192
"""Bytes of a `fail()` message sent to Python: more than the 2000 characters an error keeps."""

# Values leaving the script are checked here, in Starlark, before starlark-go converts them
# to Python: its conversion recurses without a depth check (a self-referencing list aborts
# the process) and copies shared sub-structures once per reference (a list that doubles at
# every level is exponential). The check goes level by level, so nesting and size are
# bounded before any conversion; the Python side then copies the value with `plain`, which
# checks types and keys. `*args` keeps every keyword (even `name`) free for the tool.
# `print` is replaced because starlark-go's print hook segfaults on a string that is not
# valid UTF-8, where an ordinary builtin call fails cleanly. `fail` is replaced because
# starlark-go cannot raise an error whose message is not valid UTF-8 (its binding fails with
# an internal TypeError instead): the message's first bytes go to Python as numbers, and
# bytes that are not UTF-8 become U+FFFD there.
PRELUDE = """
_sb_scalars = ("NoneType", "bool", "int", "float", "string")

def _sb_check(value, what, limit, setting):
    level = [value]
    items = 1
    for depth in range(_sb_max_depth + 1):
        below = []
        for v in level:
            t = type(v)
            if t == "string":
                if "\\x00" in v:
                    _sb_fail("%s: a string with a NUL character cannot leave the script" % what)
                continue
            if t in _sb_scalars:
                continue
            if depth >= _sb_max_depth and t in ("list", "tuple", "set", "dict"):
                _sb_fail("%s: value nested deeper than %d levels (limits.max_depth)" % (what, _sb_max_depth), "limit")
            if t == "dict":
                below.extend(v.keys())
                below.extend(v.values())
            elif t in ("list", "tuple", "set"):
                below.extend(v)
            else:
                _sb_fail("%s: a value of type %s cannot leave the script " % (what, t) +
                         "(only None, bool, int, float, string, list, tuple and dict can)")
        if not below:
            return value
        items += len(below)
        if items > limit:
            _sb_fail("%s: value is larger than %d bytes as JSON (%s)" % (what, limit, setting), "limit")
        level = below

def _sb_args(name, args):
    return _sb_check(args, "arguments of " + name, _sb_max_out, "limits.max_result_bytes")

def _sb_tool_name(fn, args):
    if len(args) == 0 or type(args[0]) != "string":
        _sb_fail('%s needs the tool as its first argument, e.g. %s("server.tool", x=1)' % (fn, fn))
    if len(args) > 1:
        _sb_fail("%s takes keyword arguments only, e.g. %s(x=1)" % (args[0], args[0]))
    return args[0]

def call_tool(*args, **kwargs):
    name = _sb_tool_name("call_tool", args)
    return _sb_call(name, _sb_args(name, kwargs))

_sb_call_tool = call_tool

def try_call(*args, **kwargs):
    name = _sb_tool_name("try_call", args)
    return _sb_try_call(name, _sb_args(name, kwargs))

def _sb_not_a_pair(*args, **kwargs):
    # a server.tool(...) call written as an item of parallel([...]): see rewrite.NOT_A_PAIR
    fn, name = args[0], args[1]
    _sb_fail('%s takes ("server.tool", {arguments}) pairs, not the results of calls: write %s([(%r, %r)])' %
             (fn, fn, name, kwargs))

def _sb_head(text, n):
    # the first n characters of text (a byte slice could cut one, and the message must be valid UTF-8)
    head = []
    for ch in text.codepoints():
        if len(head) == n:
            return "".join(head) + "..."
        head.append(ch)
    return text

def _sb_batch(fn, calls):
    shape = '("server.tool", {"arg": value}) pairs'
    results = 'not the results of calls: write %s([("server.tool", {"arg": value})])' % fn
    if type(calls) not in ("list", "tuple"):
        _sb_fail("%s takes a list of %s, not a %s" % (fn, shape, type(calls)))
    if len(calls) > _sb_max_calls:
        _sb_fail("%s of %d calls is over the limit of %d tool calls (limits.max_tool_calls)" %
                 (fn, len(calls), _sb_max_calls), "limit")
    batch = []
    for i in range(len(calls)):
        c = calls[i]
        if type(c) == "string" and (" " in c or "\\n" in c or "." not in c):
            _sb_fail("%s: item %d is not a tool name but the text %r; %s takes %s, %s" %
                     (fn, i, _sb_head(c, 40), fn, shape, results))
        if type(c) == "string":
            c = (c,)
        if type(c) not in ("list", "tuple") or len(c) not in (1, 2) or type(c[0]) != "string":
            _sb_fail("%s: item %d is not a (\\"server.tool\\", {...}) pair but a %s; %s takes %s, %s" %
                     (fn, i, type(c), fn, shape, results))
        args = c[1] if len(c) == 2 and c[1] != None else {}
        if type(args) != "dict":
            _sb_fail("%s: item %d: the arguments of %s must be a dict, not a %s" % (fn, i, c[0], type(args)))
        batch.append([c[0], _sb_args(c[0], args)])
    return batch

def parallel(calls):
    return _sb_calls("parallel", _sb_batch("parallel", calls), True)

def try_parallel(calls):
    return _sb_calls("try_parallel", _sb_batch("try_parallel", calls), False)

def json_encode(value):
    return _sb_json_encode(_sb_check(value, "json_encode value", _sb_max_in, "limits.max_tool_result_bytes"))

def print(*args, sep = " "):
    _sb_print(sep.join([str(a) for a in args]).replace("\\x00", "\\ufffd"))

def fail(*args, sep = " "):
    message = sep.join([str(a) for a in args])
    _sb_fail_text(list(message[:_sb_fail_head].elem_ords()), len(message))
"""

RESULT_CHECK = '_sb_check(result, "result", _sb_max_out, "limits.max_result_bytes")'
"""Bounds `result` in Starlark before it is converted; the limit is the prelude's `_sb_max_out`."""
