#!/usr/bin/env python3
"""Talks to a resalloc XML-RPC server the way Copr's backend and resalloc's CLI do, using only
Python's standard library, and prints what it saw as JSON. An independent client for the
copr-pools tests: if this works, Copr's backend does too."""

import json
import sys
import time
import xmlrpc.client


def collect(proxy, ticket_id, timeout=30):
    # Copr's backend polls collectTicket (vm_alloc.py); it never calls waitTicket.
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = proxy.collectTicket(ticket_id)
        if result["ready"]:
            return result
        time.sleep(0.05)
    raise SystemExit(f"ticket {ticket_id} not ready after {timeout}s")


def copr(url, count):
    proxy = xmlrpc.client.ServerProxy(url, allow_none=True)
    report = {"methods": proxy.system.listMethods(), "builds": []}
    for i in range(count):
        tags = ["arch_x86_64"]
        request_tags = sorted(set(["copr_builder"] + tags))
        ticket = proxy.takeTicket(request_tags, f"@copr/project--user{i}")
        result = collect(proxy, ticket)
        # Copr and the CLI both read the output with str() of the Binary.
        build = {
            "ticket": ticket,
            "type": type(ticket).__name__,
            "output": str(result["output"]),
            "closed": result["closed"],
            "failed": result["failed"],
        }
        # resalloc's CLI sends ticket ids as strings.
        build["by_string"] = str(proxy.collectTicket(str(ticket))["output"])
        build["wait"] = str(proxy.waitTicket(ticket))
        build["close"] = proxy.closeTicket(ticket)
        build["close_again"] = proxy.closeTicket(ticket)
        build["after_close"] = proxy.collectTicket(ticket)["closed"]
        report["builds"].append(build)
    report["unknown"] = proxy.collectTicket(987654321)
    report["help"] = proxy.system.methodHelp("takeTicket")
    try:
        proxy.noSuchMethod()
        report["fault"] = None
    except xmlrpc.client.Fault as fault:
        report["fault"] = fault.faultString
    return report


if __name__ == "__main__":
    url, scenario = sys.argv[1], sys.argv[2]
    if scenario == "copr":
        print(json.dumps(copr(url, int(sys.argv[3]) if len(sys.argv) > 3 else 3)))
    else:
        raise SystemExit(f"unknown scenario {scenario}")
