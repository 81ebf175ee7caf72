#!/usr/bin/env python3
"""Checks that imports in src/ only go down the layers and form no cycles between files.

    scripts/check-layers.py [--root DIR] [--baseline FILE] [--print-baseline]

The folders under src/ are the layers, lowest first:

    util < config < media < storage < sync < pipeline < control < app

A file may use (`crate::...`, `super::...`) its own layer and the ones below it. An import
that goes up, or a cycle of imports between files, fails the check, unless it is listed in
the baseline (scripts/layers-baseline.txt): the ones that predate the layers, each to be
removed by moving the type to the layer that owns it or by passing a handle down. An entry
of the baseline that no longer occurs also fails the check, so the list only shrinks.

A module's mod.rs re-exporting its own children (`pub use child::X`) is a facade, not an
import of the children, so it makes no cycle with a child that uses the parent's types.

It also checks that unit tests which start host processes (`Command::new`, re-executing
the test binary) are compiled only with the `process-tests` feature, which `make
test-aarch64` builds without: qemu-user's fork of a multithreaded guest can deadlock.

Reads the source as text: `use` lines and `crate::`/`super::` paths in code (comments and
doc comments are skipped). Exit 0 when clean, 1 with one line per finding otherwise.
"""

import argparse
import os
import re
import sys

LAYERS = ["util", "config", "media", "storage", "sync", "pipeline", "control", "app"]
RANK = {name: i for i, name in enumerate(LAYERS)}
PROCESS_GATE = 'feature = "process-tests"'


def module_files(src):
    """Maps module path (tuple) -> file, following `#[path]` attributes on `mod` items."""
    modules = {}

    def visit(path_parts, file):
        modules[path_parts] = file
        text = open(file, encoding="utf-8").read()
        base = os.path.dirname(file)
        stem = os.path.splitext(os.path.basename(file))[0]
        if stem not in ("mod", "lib", "main"):
            base = os.path.join(base, stem)
        for m in re.finditer(
            r'((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_0-9]+)\s*;', text
        ):
            attrs, name = m.group(1), m.group(2)
            pm = re.search(r'#\[path\s*=\s*"([^"]+)"\]', attrs)
            if pm:
                child = os.path.join(os.path.dirname(file), pm.group(1))
            else:
                child = os.path.join(base, name + ".rs")
                if not os.path.exists(child):
                    child = os.path.join(base, name, "mod.rs")
            if os.path.exists(child):
                visit(path_parts + (name,), child)

    visit((), os.path.join(src, "lib.rs"))
    return modules


def code_lines(text):
    """The text with comments removed (line comments and block comments)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return [re.sub(r"//.*$", "", line) for line in text.splitlines()]


def resolve(modules, path):
    """The longest prefix of `path` that is a module: its module path."""
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in modules:
            return tuple(path[:n])
    return ()


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"] (whitespace removed)."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [tree]
    prefix, depth, parts, cur = tree[:brace], 0, [], ""
    for ch in tree[brace + 1 : tree.rfind("}")]:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    return [p for part in parts if part for p in expand_use(prefix + part)]


def inline_modules(text):
    """(start, end, name) character ranges of inline `mod name { ... }` blocks."""
    out = []
    for m in re.finditer(r"\bmod\s+([a-z_0-9]+)\s*\{", text):
        depth, i = 0, m.end() - 1
        while i < len(text):
            depth += text[i] == "{"
            depth -= text[i] == "}"
            if depth == 0:
                break
            i += 1
        out.append((m.start(), i, m.group(1)))
    return out


def paths_in(lines):
    """(line, inline module, path) of every `crate::`/`super::`/`self::` path, use trees
    expanded; `inline module` names the inline `mod x { }` block the path is in, if any."""
    text = "\n".join(lines)
    blocks = inline_modules(text)

    def inline_at(pos):
        inner = [b for b in blocks if b[0] <= pos <= b[1]]
        return tuple(b[2] for b in sorted(inner))

    found = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)::[^;]*);", text):
        lineno = text.count("\n", 0, m.start()) + 1
        for path in expand_use(m.group(1)):
            found.append((lineno, inline_at(m.start()), path))
    rest = re.sub(r"\buse\s+(?:crate|super|self)::[^;]*;", lambda m: " " * len(m.group(0)), text)
    for m in re.finditer(r"\b(?:crate|super|self)(?:::[A-Za-z_0-9]+)+", rest):
        lineno = text.count("\n", 0, m.start()) + 1
        found.append((lineno, inline_at(m.start()), m.group(0)))
    return found


def imports(modules, mod_path, file):
    """The modules `file` refers to, with the first line each reference is on."""
    out = {}
    is_dir_module = os.path.basename(file) in ("mod.rs", "lib.rs")
    for lineno, inline, path in paths_in(code_lines(open(file, encoding="utf-8").read())):
        words = [w for w in path.split("::") if w and w != "*"]
        head, rest = words[0], words[1:]
        here = mod_path + inline
        if head == "crate":
            base = ()
        elif head == "self":
            base = here
        else:
            base = here[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        rest = [w.split(" as ")[0] for w in rest if w != "self"]
        target = resolve(modules, list(base) + rest)
        if target == mod_path or target == ():
            continue
        # A directory module naming its own descendants is a facade, not an import.
        if is_dir_module and target[: len(mod_path)] == mod_path:
            continue
        out.setdefault(target, lineno)
    return out


def layer(mod_path):
    return mod_path[0] if mod_path and mod_path[0] in RANK else None


def sccs(graph):
    """Tarjan's strongly connected components of size > 1."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def declarations(modules, mod_path):
    """The attributes on the `mod` declarations of the module and its ancestors."""
    attrs = []
    for n in range(len(mod_path), 0, -1):
        parent = modules.get(mod_path[: n - 1])
        if parent is None:
            continue
        text = open(parent, encoding="utf-8").read()
        decl = re.search(
            r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+" + mod_path[n - 1] + r"\s*;",
            text,
        )
        if decl:
            attrs.append(decl.group(1))
    return attrs


def process_findings(modules, src):
    out = []
    for mod_path, file in sorted(modules.items()):
        lines = code_lines(open(file, encoding="utf-8").read())
        text = "\n".join(lines)
        attrs = declarations(modules, mod_path)
        test_file = any(re.search(r"cfg\((all\()?test", a) for a in attrs)
        file_gated = any(PROCESS_GATE in a for a in attrs)
        # Inline test modules: everything after `#[cfg(...test...)] mod NAME {`.
        inline = re.search(r"#\[cfg\(([^\]]*test[^\]]*)\)\]\s*mod\s+[a-z_]+\s*\{", text)
        for lineno, line in enumerate(lines, 1):
            if not re.search(r"Command::new\(|current_exe\(\)", line):
                continue
            in_inline = inline is not None and text.count("\n", 0, inline.start()) < lineno - 1
            if not (test_file or in_inline):
                continue  # production code (a pipe source starts its command)
            if file_gated or (in_inline and PROCESS_GATE in inline.group(1)):
                continue
            rel = os.path.relpath(file, os.path.dirname(src))
            out.append(
                f"process: {rel}:{lineno}: a unit test starts a process outside the "
                f"`process-tests` feature (declare its module under "
                f"#[cfg(all(test, {PROCESS_GATE}))])"
            )
    return out


def findings(src):
    modules = module_files(src)
    graph = {}
    ups = []
    for mod_path, file in sorted(modules.items()):
        rel = os.path.relpath(file, os.path.dirname(src))
        targets = imports(modules, mod_path, file)
        graph[rel] = set()
        for target, lineno in sorted(targets.items()):
            trel = os.path.relpath(modules[target], os.path.dirname(src))
            graph[rel].add(trel)
            a, b = layer(mod_path), layer(target)
            if a and b and RANK[b] > RANK[a]:
                ups.append(f"up: {rel} -> {trel} ({a} imports {b})")
    cycles = [f"cycle: {' , '.join(c)}" for c in sccs(graph)]
    return sorted(set(ups)) + cycles + process_findings(modules, src)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(here), help="the repository")
    ap.add_argument("--baseline", default=os.path.join(here, "layers-baseline.txt"))
    ap.add_argument("--print-baseline", action="store_true", help="print today's findings")
    args = ap.parse_args()
    found = findings(os.path.join(args.root, "src"))
    if args.print_baseline:
        print("\n".join(found))
        return 0
    baseline = set()
    if os.path.exists(args.baseline):
        for line in open(args.baseline, encoding="utf-8"):
            line = line.strip()
            if line and not line.startswith("#"):
                baseline.add(line)
    new = [f for f in found if f not in baseline]
    gone = sorted(baseline - set(found))
    for f in new:
        print(f"check-layers: {f}")
    for f in gone:
        print(f"check-layers: fixed, remove it from {os.path.basename(args.baseline)}: {f}")
    if new or gone:
        print(
            f"check-layers: {len(new)} new finding(s), {len(gone)} stale baseline entr(ies); "
            "imports go down only: util < config < media < storage < sync < pipeline < "
            "control < app (see src/lib.rs)"
        )
        return 1
    print(f"check-layers: ok ({len(modules_count(args.root))} files, {len(baseline)} known from before the layers)")
    return 0


def modules_count(root):
    return module_files(os.path.join(root, "src"))


if __name__ == "__main__":
    sys.exit(main())
