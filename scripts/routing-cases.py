#!/usr/bin/env python3
"""Writes server/tests/data/routing-cases.json: for every (pattern, build) below, whether
Python's re.match matches, and for every rule list and build the tags Copr's frontend would
give (the tags of every matching rule, concatenated in order). copr-pools' matcher is tested
against this table, so its answers are Python's, not our idea of them.

Run it after changing the cases: python3 scripts/routing-cases.py
"""
import json
import os
import re

PATTERNS = [
    "@asahi/kernel/.*(x86_64|aarch64)/kernel",
    "@fedora-llvm-team/llvm-snapshots[^/]*/.*x86_64/(llvm|clang)",
    r"^@python/python3\.\d+/.*/root$",
    "@copr/measure-hypervisor.*/.*ppc64le/.*",
    "@team/.*",
    ".*/.*/.*/chromium",
    ".*/.*/.*/chromium$",
    "frostyx/copr-.*",
    "@asahi/kernel",
    r"\w+/p\d+/.*",
    "[^@].*/.*/epel-9-.*/.*",
    "(?P<owner>@[^/]+)/big/.*",
    "@team/pr[^/]*/fedora-rawhide-s390x/.*",
    "a{2,3}/.*",
    "@ünïcode/.*/.*/пакет",
    r".*/.*/.*/\w+-ñ$",
    "(x|y)?z/.*",
    "@copr/copr-dev:pr:123/.*",
]

BUILDS = [
    "@asahi/kernel/fedora-41-x86_64/kernel",
    "@asahi/kernel/fedora-41-aarch64/kernel-edge",
    "@asahi/kernel-edge/fedora-41-aarch64/kernel",
    "@asahi/kernel/fedora-41-ppc64le/kernel",
    "@fedora-llvm-team/llvm-snapshots/fedora-rawhide-x86_64/llvm",
    "@fedora-llvm-team/llvm-snapshots:pr:42/fedora-rawhide-x86_64/clang",
    "@fedora-llvm-team/llvm-snapshots-big-merge/fedora-41-x86_64/clang",
    "@fedora-llvm-team/llvm-snapshots/fedora-rawhide-aarch64/llvm",
    "@python/python3.13/fedora-rawhide-x86_64/root",
    "@python/python3.13/fedora-rawhide-x86_64/rootfs",
    "@python/python3.x/fedora-rawhide-x86_64/root",
    "@copr/measure-hypervisor-power9/fedora-41-ppc64le/dummy-pkg",
    "@team/llvm/fedora-41-x86_64/clang",
    "@team/pr:pr:7/fedora-rawhide-s390x/foo",
    "@team/pr-x/fedora-rawhide-s390x/foo",
    "@teamx/llvm/fedora-41-x86_64/clang",
    "someone/chromium-build/fedora-41-x86_64/chromium",
    "someone/chromium-build/fedora-41-x86_64/chromium-freeworld",
    "frostyx/copr-cli/fedora-41-x86_64/copr-cli",
    "frostyx/other/fedora-41-x86_64/copr-cli",
    "user_1/p42/epel-9-x86_64/pkg",
    "user/p/epel-9-x86_64/pkg",
    "@group/p/epel-9-x86_64/pkg",
    "@group/big/centos-stream-9-x86_64/pkg",
    "aa/p/fedora-41-x86_64/pkg",
    "aaaa/p/fedora-41-x86_64/pkg",
    "@ünïcode/proj/fedora-41-x86_64/пакет",
    "@unicode/proj/fedora-41-x86_64/пакет",
    "owner/proj/fedora-41-x86_64/café-ñ",
    "owner/proj/fedora-41-x86_64/cafe-n",
    "z/a/b/c",
    "xz/a/b/c",
    "xyz/a/b/c",
    "@copr/copr-dev:pr:123/fedora-41-x86_64/copr-frontend",
    "@copr/copr-dev/fedora-41-x86_64/copr-frontend",
]

RULE_LISTS = [
    [
        {"pattern": "@asahi/kernel/.*(x86_64|aarch64)/kernel", "tags": ["on_demand_powerful"]},
        {"pattern": "@asahi/.*", "tags": ["team_asahi"]},
        {"pattern": ".*/.*/.*aarch64/.*", "tags": ["arch_aarch64_big", "on_demand_powerful"]},
    ],
]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    matches = [
        {"pattern": p, "build": b, "matches": re.match(p, b) is not None}
        for p in PATTERNS
        for b in BUILDS
    ]
    routes = []
    for rules in RULE_LISTS:
        for b in BUILDS:
            tags = []
            for r in rules:
                if re.match(r["pattern"], b):
                    tags.extend(r["tags"])
            routes.append({"rules": rules, "build": b, "tags": tags})
    out = os.path.join(root, "server", "tests", "data", "routing-cases.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"matches": matches, "routes": routes}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(matches)} match cases and {len(routes)} route cases to {out}")


if __name__ == "__main__":
    main()
