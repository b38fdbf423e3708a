#!/usr/bin/env python3
"""Cluster DNS records and Service virtual IPs for the e2e node, from the API server.

There is no CoreDNS image and no kube-proxy binary on this machine, so this process stands in
for both, inside the e2e network namespace only:

- DNS: writes a hosts file that dnsmasq (serving the cluster domain on the node IP) re-reads on
  change: `<svc>.<ns>.svc.<domain>` is the ClusterIP, or for a headless Service its endpoints'
  addresses; `<hostname>.<svc>.<ns>.svc.<domain>` is an endpoint with a hostname (StatefulSet
  pods behind their governing Service; not-ready ones too when the Service publishes them).
- Service IPs: keeps the iptables nat chain KGW-E2E-SERVICES so that ClusterIP:port is DNAT'ed
  to one of the ready endpoints (random choice per connection, as kube-proxy's iptables mode),
  for connections from pods (PREROUTING) and from the node (OUTPUT). DNAT'ed pod traffic is
  masqueraded so replies from a pod on the same bridge come back through the node.

Polls EndpointSlices and Services every 0.5 s (a change shows up within a second).
Usage: netsync.py --server https://127.0.0.1:6443 --ca ca.crt --cert admin.crt --key admin.key
                  --hosts DIR/cluster.hosts --pod-cidr 10.244.0.0/24 [--domain cluster.local]
"""
import argparse
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request

CHAIN = "KGW-E2E-SERVICES"


def get(ctx, server, path):
    with urllib.request.urlopen(server + path, context=ctx, timeout=10) as resp:
        return json.load(resp)


def records(services, slices, domain):
    """(hosts lines, DNAT rules) for the current Services and EndpointSlices."""
    by_service = {}
    for s in slices:
        owner = s["metadata"].get("labels", {}).get("kubernetes.io/service-name")
        if owner:
            by_service.setdefault((s["metadata"]["namespace"], owner), []).append(s)
    hosts, rules = [], []
    for svc in services:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        spec = svc.get("spec", {})
        fqdn = f"{name}.{ns}.svc.{domain}"
        publish_all = spec.get("publishNotReadyAddresses", False)
        ready_addrs, ready_ports = [], {}
        for sl in by_service.get((ns, name), []):
            ports = {p.get("name", ""): p.get("port") for p in sl.get("ports") or []}
            for ep in sl.get("endpoints") or []:
                ready = ep.get("conditions", {}).get("ready", True)
                for addr in ep.get("addresses", []):
                    if ep.get("hostname") and (ready or publish_all):
                        hosts.append(f"{addr} {ep['hostname']}.{fqdn}")
                    if ready or publish_all:
                        ready_addrs.append(addr)
                        for pname, pnum in ports.items():
                            ready_ports.setdefault(pname, []).append((addr, pnum))
        cluster_ip = spec.get("clusterIP")
        if cluster_ip in (None, "", "None"):
            hosts.extend(f"{a} {fqdn}" for a in sorted(set(ready_addrs)))
            continue
        hosts.append(f"{cluster_ip} {fqdn}")
        for port in spec.get("ports", []):
            targets = sorted(set(ready_ports.get(port.get("name", ""), [])))
            proto = port.get("protocol", "TCP").lower()
            for i, (addr, pnum) in enumerate(targets):
                left = len(targets) - i
                stat = f"-m statistic --mode random --probability {1.0 / left:.6f} " if left > 1 else ""
                rules.append(f"-A {CHAIN} -d {cluster_ip}/32 -p {proto} --dport {port['port']} "
                             f"{stat}-j DNAT --to-destination {addr}:{pnum}")
            if not targets:
                rules.append(f"-A {CHAIN} -d {cluster_ip}/32 -p {proto} --dport {port['port']} "
                             f"-j REJECT --reject-with tcp-reset" if proto == "tcp" else "")
    return sorted(set(hosts)), [r for r in rules if r]


def iptables(args, stdin=None):
    subprocess.run(args, input=stdin, text=True, check=True, capture_output=True)


def install_hooks(pod_cidr):
    iptables(["iptables", "-t", "nat", "-N", CHAIN])
    for hook in ("PREROUTING", "OUTPUT"):
        iptables(["iptables", "-t", "nat", "-I", hook, "-j", CHAIN])
    iptables(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", pod_cidr, "-m", "conntrack",
              "--ctstate", "DNAT", "-j", "MASQUERADE"])
    # REJECT lives in the filter table: a Service without endpoints refuses at once.
    iptables(["iptables", "-t", "filter", "-N", CHAIN])
    for hook in ("FORWARD", "OUTPUT"):
        iptables(["iptables", "-t", "filter", "-I", hook, "-j", CHAIN])


def apply_rules(rules):
    nat = [r for r in rules if "DNAT" in r]
    rej = [r for r in rules if "REJECT" in r]
    text = f"*nat\n:{CHAIN} - [0:0]\n" + "".join(r + "\n" for r in nat) + "COMMIT\n"
    text += f"*filter\n:{CHAIN} - [0:0]\n" + "".join(r + "\n" for r in rej) + "COMMIT\n"
    iptables(["iptables-restore", "--noflush"], text)


def main():
    ap = argparse.ArgumentParser()
    for a in ("--server", "--ca", "--cert", "--key", "--hosts", "--pod-cidr"):
        ap.add_argument(a, required=True)
    ap.add_argument("--domain", default="cluster.local")
    args = ap.parse_args()
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    install_hooks(args.pod_cidr)
    last_hosts, last_rules = None, None
    while True:
        try:
            services = get(ctx, args.server, "/api/v1/services")["items"]
            slices = get(ctx, args.server, "/apis/discovery.k8s.io/v1/endpointslices")["items"]
        except Exception as e:  # the API server restarting or not up yet: try again
            print(f"netsync: {e}", file=sys.stderr, flush=True)
            time.sleep(0.5)
            continue
        hosts, rules = records(services, slices, args.domain)
        if hosts != last_hosts:
            # Outside dnsmasq's hosts directory, renamed into it: dnsmasq never reads half a file.
            tmp = os.path.join(os.path.dirname(os.path.dirname(args.hosts)), ".netsync-hosts.tmp")
            with open(tmp, "w") as f:
                f.write("".join(h + "\n" for h in hosts))
            os.rename(tmp, args.hosts)
            last_hosts = hosts
            print(f"netsync: {len(hosts)} DNS records", flush=True)
        if rules != last_rules:
            apply_rules(rules)
            last_rules = rules
            print(f"netsync: {len(rules)} service rules", flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    main()
