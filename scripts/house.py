#!/usr/bin/env python3
"""The house rules, checked: no source file over 800 lines (none over 600
unless listed as one cohesive thing) and no import circle between files.

An edge A -> B means a `use` or a path in A names an item that B defines
(re-exports are followed to the file that defines the item). A parent
module's `mod b;` is not an edge; its `pub use b::X` is."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LIMIT = 800
SOFT_LIMIT = 600
# Files over 600 lines that are one cohesive thing (say why in the note).
COHESIVE = {}


def module_files(src):
    """module path tuple -> file, for every .rs file under src."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            mods[tuple(rel)] = path
    return mods


def strip(text):
    """The code without comments, string contents or char literals."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', text[i:]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            j = text.find('"' + hashes, i + len(hashes) + 2)
            out.append('""')
            i = n if j < 0 else j + 1 + len(hashes)
        elif c == "b" and text.startswith('b"', i) and not (i and text[i - 1].isalnum()):
            i += 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""')
            i = j + 1
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:]):
            out.append("' '")
            i += len(re.match(r"'(\\.[^']*|[^\\'])'", text[i:]).group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand(tree):
    """'a::{b, c::{d, e}}' -> ['a::b', 'a::c::d', 'a::c::e']"""
    tree = tree.strip()
    i = tree.find("{")
    if i < 0:
        return [tree.split(" as ")[0].strip()]
    prefix = tree[:i]
    inner = tree[i + 1 : tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            out.extend(prefix + q for q in expand(p))
    return out


USE = re.compile(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);")
PATH = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def inline_modules(text):
    """(start, end, name) of every `mod name { ... }` in the text."""
    found = []
    for x in re.finditer(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{", text):
        depth, j = 0, x.end() - 1
        while j < len(text):
            depth += text[j] == "{"
            depth -= text[j] == "}"
            if depth == 0:
                break
            j += 1
        found.append((x.end(), j, x.group(1)))
    return found


def absolute(path, here):
    parts = [p for p in path.replace(" ", "").split("::") if p]
    if not parts:
        return None
    cur = list(here)
    if parts[0] == "crate":
        cur, parts = [], parts[1:]
    elif parts[0] in ("super", "self"):
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                cur = cur[:-1]
            parts = parts[1:]
    else:
        return None  # another crate, or a name in scope
    return tuple(cur) + tuple(parts)


def circles(src):
    """Import circles between the files of the crate rooted at `src`."""
    mods = module_files(src)
    texts = {m: strip(open(p).read()) for m, p in mods.items()}
    # re-exports: module -> {name: absolute path}
    reexports = {}
    for m, t in texts.items():
        r = {}
        for vis, tree in USE.findall(t):
            if not vis:
                continue
            for p in expand(tree):
                a = absolute(p, m)
                if a:
                    alias = tree.split(" as ")[-1].strip() if " as " in tree and "{" not in tree else a[-1]
                    r[alias] = a
        reexports[m] = r

    def resolve(path, depth=0):
        for k in range(len(path), -1, -1):
            if path[:k] in mods:
                mod = path[:k]
                rest = path[k:]
                if rest and depth < 8 and rest[0] in reexports.get(mod, {}):
                    target = reexports[mod][rest[0]] + rest[1:]
                    if target != path:
                        return resolve(target, depth + 1)
                return mod
        return None

    edges = {m: set() for m in mods}
    for m, t in texts.items():
        inline = inline_modules(t)

        def here(pos):
            inner = [(a, name) for a, b, name in inline if a <= pos < b]
            return m + tuple(name for _, name in sorted(inner))

        paths = []
        for u in USE.finditer(t):
            paths += [(u.start(), p) for p in expand(u.group(2))]
        for x in PATH.finditer(USE.sub(lambda u: " " * len(u.group(0)), t)):
            paths.append((x.start(), x.group(1)))
        for pos, p in paths:
            a = absolute(p, here(pos))
            if not a:
                continue
            target = resolve(a)
            if target is not None and target != m:
                edges[m].add(target)
    failures = []
    # strongly connected components (Tarjan)
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in mods:
        if v not in index:
            strong(v)
    name = lambda m: os.path.relpath(mods[m], ROOT)
    for comp in sccs:
        inside = set(comp)
        lines = [f"  {name(a)} -> {name(b)}" for a in sorted(comp) for b in sorted(edges[a]) if b in inside]
        failures.append("import circle:\n" + "\n".join(lines))
    return failures


def sizes():
    failures = []
    for top in ("src", "benches"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in sorted(files):
                if not f.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, f)
                n = sum(1 for _ in open(path))
                rel = os.path.relpath(path, ROOT)
                if n > LIMIT:
                    failures.append(f"{rel}: {n} lines (the limit is {LIMIT})")
                elif n > SOFT_LIMIT and rel not in COHESIVE:
                    failures.append(f"{rel}: {n} lines (over {SOFT_LIMIT} and not listed as cohesive)")
    return failures


def main():
    failures = sizes()
    for crate in ("src", "tests/api", "benches/harness"):
        failures += circles(os.path.join(ROOT, crate))
    for f in failures:
        print(f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
