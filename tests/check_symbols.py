#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The symbols the shared libraries export (a meson test; see tests/meson.build).

libshmdict.so is built with -fvisibility=hidden and exports only the functions the public headers
mark SHMD_API (include/shmdict/api.h). This test holds it to that:

  1. every defined dynamic symbol of libshmdict.so (`nm -D --defined-only`: text, data, bss,
     read-only, weak) is named shmd_* -- no internal shmd__* function, no unprefixed kv_* helper;
  2. the exported shmd_* functions are exactly the functions declared in include/shmdict/*.h (a
     shmd_ function that is not declared there is internal and must not be exported; a declared
     one that is missing means a lost SHMD_API mark or a function that was never defined), and
     every such declaration carries SHMD_API;
  3. libshmdict-malloc.so (the LD_PRELOAD shim, linked with malloc/shim.map) exports only the
     malloc family and the shim's own shmdict_malloc_* functions;
  4. a program that uses only the public API (examples/guild_friends.c, built against the shared
     library) loads libshmdict.so, builds a small store and checks it.

Usage: check_symbols.py --lib LIBSHMDICT_SO --include INCLUDE_DIR [--shim SHIM_SO]
                        [--shared-example EXE]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

# What a malloc replacement exports (glibc's names) plus the shim's own query.
MALLOC_FAMILY = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc",
    "memalign", "valloc", "pvalloc", "malloc_usable_size",
}
SHIM_OWN = re.compile(r"^shmdict_malloc_[a-z0-9_]+$")
# nm's letters for defined symbols that another object can bind to.
DEFINED = set("TDBRVWGSiu")

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def defined_dynamic(path):
    """(name, type letter) of every defined dynamic symbol of a shared object."""
    out = subprocess.run(["nm", "-D", "--defined-only", path], check=True, capture_output=True,
                         text=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in DEFINED:
            syms.append((parts[2].split("@")[0], parts[1]))
    return syms


def declared_functions(include_dir):
    """{name: has_SHMD_API} for every non-inline function declared at file scope in the headers."""
    decls = {}
    hdir = os.path.join(include_dir, "shmdict")
    for fn in sorted(os.listdir(hdir)):
        if not fn.endswith(".h"):
            continue
        text = open(os.path.join(hdir, fn)).read()
        text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
        # A declaration starts at column 0 (bodies of inline functions are indented) and its
        # name is the first shmd_ identifier followed by '(' on that line.
        for m in re.finditer(r"(?m)^([A-Za-z_][^\n(;{}#]*?)\b(shmd_[A-Za-z0-9_]+)\s*\(", text):
            head = m.group(1)
            if re.match(r"\s*(static|typedef|return|extern\s+\"C\")\b", head) or head.startswith("#"):
                continue
            # Only declarations (ending in ';'), not definitions.
            rest = text[m.end():]
            depth, i = 1, 0
            while i < len(rest) and depth:
                depth += {"(": 1, ")": -1}.get(rest[i], 0)
                i += 1
            tail = rest[i:].lstrip()
            if not tail.startswith(";"):
                continue
            decls[m.group(2)] = bool(re.search(r"\bSHMD_API\b", head))
    return decls


def check_libshmdict(lib, include_dir):
    syms = defined_dynamic(lib)
    names = {n for n, _ in syms}
    bad = sorted(f"{n} ({t})" for n, t in syms if not re.match(r"^shmd_[a-z0-9]", n))
    if bad:
        fail(f"{lib} exports {len(bad)} symbols that are not shmd_*: " + ", ".join(bad[:40]) +
             (" ..." if len(bad) > 40 else ""))
    decls = declared_functions(include_dir)
    if len(decls) < 100:
        fail(f"found only {len(decls)} function declarations in {include_dir}/shmdict: the parser "
             "of this test no longer understands the headers")
    unmarked = sorted(n for n, marked in decls.items() if not marked)
    if unmarked:
        fail("declared in the public headers without SHMD_API: " + ", ".join(unmarked))
    exported = {n for n in names if n.startswith("shmd_")}
    extra = sorted(exported - set(decls))
    if extra:
        fail("exported but declared in no public header (internal: make them static or shmd__*): "
             + ", ".join(extra))
    missing = sorted(set(decls) - exported)
    if missing:
        fail("declared in the public headers but not exported: " + ", ".join(missing))
    print(f"{os.path.basename(lib)}: {len(exported)} shmd_* functions exported, "
          f"{len(decls)} declared in the public headers, {len(bad)} other symbols")


def check_shim(shim):
    syms = defined_dynamic(shim)
    bad = sorted(n for n, _ in syms if n not in MALLOC_FAMILY and not SHIM_OWN.match(n))
    if bad:
        fail(f"{shim} exports symbols beyond the malloc family and shmdict_malloc_*: " +
             ", ".join(bad[:40]))
    missing = sorted(MALLOC_FAMILY - {n for n, _ in syms})
    if missing:
        fail(f"{shim} does not export " + ", ".join(missing))
    print(f"{os.path.basename(shim)}: exports {', '.join(sorted(n for n, _ in syms))}")


def check_shared_example(exe):
    needed = subprocess.run(["readelf", "-d", exe], check=True, capture_output=True,
                            text=True).stdout
    if not re.search(r"NEEDED.*\[libshmdict\.so\.\d+\]", needed):
        fail(f"{exe} does not load libshmdict.so (no NEEDED entry): it is not the shared build")
        return
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    d = tempfile.mkdtemp(prefix="shmd-symbols-", dir=base)
    try:
        for args, want in ((["-n", "300", "--friends", "5"], "consistency: ok"),
                           (["--check"], "check: ok")):
            r = subprocess.run([exe, "-d", d, "-s", "gf"] + args, capture_output=True, text=True,
                               timeout=120)
            if r.returncode != 0 or want not in r.stdout:
                fail(f"{exe} {' '.join(args)} (linked with libshmdict.so) exited {r.returncode} "
                     f"without '{want}':\n{r.stdout}{r.stderr}")
                return
        print(f"{os.path.basename(exe)}: built and checked a store through libshmdict.so")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--include", required=True)
    ap.add_argument("--shim")
    ap.add_argument("--shared-example")
    a = ap.parse_args()
    check_libshmdict(a.lib, a.include)
    if a.shim:
        check_shim(a.shim)
    if a.shared_example:
        check_shared_example(a.shared_example)
    if failures:
        print(f"check_symbols: {len(failures)} failures")
        return 1
    print("check_symbols: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
