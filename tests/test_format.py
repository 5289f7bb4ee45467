"""The trace format defined once (format/trace_format.h): the document lists
the same types and keys, no collector/ or tools/ file spells a type or key
where it writes or reads the trace, and writer and reader agree on every
record type (issue 21, point 1)."""
import glob
import json
import os
import re
import subprocess

from conftest import ROOT, TOOL, prog, records, run_shim, traces

HEADER = os.path.join(ROOT, "format", "trace_format.h")
DOC = os.path.join(ROOT, "docs", "trace-format.md")


def macro_list(name):
    """The names of X-macro list NAME: [(a,), ...] or [(type, key), ...]."""
    text = open(HEADER).read()
    m = re.search(r"#define %s\((\w)\)(.*?)\n\n" % name, text, re.S)
    assert m, f"no {name} in {HEADER}"
    return re.findall(r"\b%s\(([\w, ]+)\)" % m.group(1), m.group(2))


def format_types():
    return macro_list("AS_TRACE_TYPES")


def format_keys():
    return macro_list("AS_TRACE_KEYS")


def format_fields():
    fields = {}
    for pair in macro_list("AS_TRACE_FIELDS"):
        ty, key = [x.strip() for x in pair.split(",")]
        fields.setdefault(ty, set()).add(key)
    return fields


def doc_fields():
    """{type: keys} from the tables under each `type` heading, and the
    header's option keys (its `options` row)."""
    fields, options, cur = {}, set(), None
    for line in open(DOC):
        m = re.match(r"#+ `(\w+)`", line)
        if m:
            cur = m.group(1)
            fields.setdefault(cur, set())
            continue
        if line.startswith("#"):
            cur = None
        m = re.match(r"\| (`[^|]*`) \|", line)
        if m and cur:
            fields[cur] |= set(re.findall(r"`(\w+)`", m.group(1)))
        if cur == "header" and line.startswith("| `options` |"):
            options = set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", line.split("|")[3])))
    return fields, options


def test_docs_list_the_format():
    fields, options = doc_fields()
    assert list(fields) == format_types(), "docs/trace-format.md's record types differ from AS_TRACE_TYPES"
    assert fields == format_fields()
    assert options == set(macro_list("AS_TRACE_OPTION_KEYS"))
    listed = set().union(*format_fields().values()) | options
    assert sorted(format_keys()) == sorted(listed), "AS_TRACE_KEYS holds a key no record has, or twice"


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


# Where a literal would be a type or key of the trace: the reader's map
# look-ups and type tests (tools/), the writer's string packers and type
# tests (collector/).  Literals elsewhere (report headings, chrome's own
# JSON keys, command-line options) belong to other formats.
READ_CONTEXTS = [r"\bmp_\w+\([^;]*", r"strcmp\(\s*type\s*,[^;]*", r"memcmp\([^;]*",
                 r"static const char \*const \w+\[\] = \{[^;]*"]
WRITE_CONTEXTS = [r"\b(?:as_)?pack_str\(\s*(?:pk|&pk)\s*,\s*\"\w+\"\s*\)", r"\bpack_str\(\s*\"\w+\"\s*\)",
                  r"msgpack_pack_str_body\([^;]*", r"memcmp\([^;]*", r"\bkey\(\s*pk\s*,[^;]*"]


def literal_hits(files, contexts, names):
    hits = []
    for path in files:
        text = strip_comments(open(path).read())
        for ctx in contexts:
            for m in re.finditer(ctx, text, re.S):
                for lit in re.findall(r'(?<!\\)"(\w+)"', m.group(0)):
                    if lit in names:
                        line = text.count("\n", 0, m.start()) + 1
                        hits.append(f"{os.path.relpath(path, ROOT)}:{line}: \"{lit}\"")
    return hits


def test_no_type_or_key_spelled_outside_the_format():
    names = set(format_types()) | set(format_keys())
    tools = glob.glob(os.path.join(ROOT, "tools", "*.[ch]"))
    collector = glob.glob(os.path.join(ROOT, "collector", "*.[ch]"))
    hits = literal_hits(tools, READ_CONTEXTS, names) + literal_hits(collector, WRITE_CONTEXTS, names)
    assert not hits, "types/keys spelled as literals (use AS_KEY/AS_TYPE, AS_K_*, AS_T_*):\n" + "\n".join(hits)


def run_every_kind(tmp_path):
    """Programs and options that, together, write every record type."""
    runs = [
        ("spans", [prog("spans")], None),                       # block, stack, module, span*, overhead
        ("stall", [prog("spans"), "stall"], None),              # stall
        ("coro", [prog("coro_tasks"), "tree"], None),           # task, task_runs, task_end, func
        ("uv", [prog("uv_tasks"), "timer"], None),              # callback
        ("ctl", [prog("ctl_toggle"), "20"], None),              # ctl
        ("flight", [prog("flight_loop"), "2000", "block", "100"],
         "mode=flight:flight_exit=1:trigger_ms=100"),           # flight
    ]
    out = {}
    for name, cmd, options in runs:
        d = tmp_path / name
        d.mkdir()
        run_shim(cmd, d, options=options, timeout=120)
        out[name] = traces(d)
        assert out[name], f"{name}: no trace"
    return out


# What the reader made of each type, in `report --json` (one trace's object).
DECODED = {
    "header": lambda t, r: t["pid"] == r[0]["pid"] and t["block_ms"] == r[0]["options"]["block_ms"],
    "thread": lambda t, r: {x["tid"] for x in t["threads"]} >= {x["tid"] for x in r if x["type"] == "thread"},
    "iters": lambda t, r: sum(x["iterations"] for x in t["threads"]) ==
    sum(len(x["d"]) // 2 for x in r if x["type"] == "iters"),
    "block": lambda t, r: t["blocking_total"] == sum(1 for x in r if x["type"] == "block"),
    "stack": lambda t, r: any(b["stack"] for b in t["blocking"] + t["stalls"]),
    "module": lambda t, r: any(f.get("module") for b in t["blocking"] + t["stalls"] for f in b["stack"]),
    "stall": lambda t, r: t["stalls_total"] == sum(1 for x in r if x["type"] == "stall"),
    "task": lambda t, r: t["tasks"]["created"] == sum(1 for x in r if x["type"] == "task"),
    "task_end": lambda t, r: t["tasks"]["completed"] == sum(1 for x in r if x["type"] == "task_end"
                                                            and x["status"] == "completed"),
    "task_runs": lambda t, r: any(n.get("run_ms", 0) > 0 for n in t["tasks"]["roots"]),
    "func": lambda t, r: any(n.get("name") not in (None, "") for n in t["tasks"]["roots"]) or
    any(c["function"] for c in t["slow_callbacks"]),
    "callback": lambda t, r: sum(c["count"] for c in t["slow_callbacks"]) ==
    sum(1 for x in r if x["type"] == "callback"),
    "span": lambda t, r: len(t["spans"]) + len(t["requests"]) > 0,
    "span_end": lambda t, r: any(s["duration_ms"] is not None for s in t["spans"] + t["requests"]),
    "span_meta": lambda t, r: any(s["metadata"] for s in t["requests"] +
                                  [c for q in t["requests"] for c in q["spans"]]),
    "span_cumulative": lambda t, r: sum(c["count"] for c in t["cumulative"]) ==
    sum(x["count"] for x in r if x["type"] == "span_cumulative"),
    "overhead": lambda t, r: t["overhead"] and t["overhead"]["records"] ==
    [x for x in r if x["type"] == "overhead"][-1]["records"],
    "ctl": lambda t, r: [c["cmd"] for c in t["ctl"]] == [x["cmd"] for x in r if x["type"] == "ctl"],
    "flight": lambda t, r: t["flight"] and t["flight"]["trigger"] ==
    [x for x in r if x["type"] == "flight"][0]["trigger"],
    "end": lambda t, r: t["complete"] and t["end_reason"] == r[-1]["reason"],
}


# written whether or not a finding refers to them: judged where one does
DICTIONARY = {"stack", "module", "func"}


def test_writer_and_reader_agree_on_every_type(tmp_path):
    types = format_types()
    fields = format_fields()
    assert sorted(DECODED) == sorted(types), "a type of the list has no decoding check here"
    seen, decoded = set(), set()
    for name, paths in run_every_kind(tmp_path).items():
        for path in paths:
            recs = records(path)
            p = subprocess.run([TOOL, "report", "--json", path], capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            report = json.loads(p.stdout)["traces"][0]
            for ty in sorted({r["type"] for r in recs}):
                assert ty in types, f"{name}: the collector wrote type {ty!r}, not in the list"
                for r in recs:
                    if r["type"] == ty:
                        extra = set(r) - fields[ty] - {"type"}
                        assert not extra, f"{name}: {ty} has keys {extra} the list does not give it"
                if DECODED[ty](report, recs):
                    decoded.add(ty)
                else:
                    assert ty in DICTIONARY, f"{name}: the reader lost what the {ty} records said"
                seen.add(ty)
    assert seen == set(types), f"never written: {set(types) - seen}"
    assert decoded == set(types), f"never decoded: {set(types) - decoded}"
