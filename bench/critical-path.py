#!/usr/bin/env python3
"""The critical path of an operation, read from the functions' own per-call logs.

Run the local cloud with `RUST_LOG=info,courier_aws::calls=debug` (courier-local passes RUST_LOG
on to the functions), load it (e.g. `courier-bench`), then point this at its logs:

    bench/critical-path.py <state-dir>/logs/SendMessageFunction.log [--last-operation PostToConnection]

Each `aws call` line carries the invocation's trace id and the call's start and end. Per
invocation, the calls form an interval order; the depth of a call is 1 + the depth of the
deepest call that ended before it started (calls that overlap ran side by side). The critical
path to the invocation's last-starting `--last-operation` call (for `sendMessage`, the post to
the recipient: the reply is posted earlier, right after the write) is that call's depth, and the
chain itself is printed for the median invocation.
"""
import argparse, collections, json, statistics, sys

ap = argparse.ArgumentParser()
ap.add_argument("log")
ap.add_argument("--last-operation", default="PostToConnection")
args = ap.parse_args()

calls = collections.defaultdict(list)
with open(args.log, errors="replace") as f:
    for line in f:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        fields = rec.get("fields", {})
        if fields.get("message") != "aws call" or not fields.get("trace"):
            continue
        calls[fields["trace"]].append(
            (int(fields["start_us"]), int(fields["end_us"]), fields["operation"]))

depths, chains = [], []
for trace, cs in calls.items():
    cs.sort()
    depth, prev = [], []
    for i, (s, e, op) in enumerate(cs):
        before = [j for j in range(i) if cs[j][1] <= s]
        best = max(before, key=lambda j: depth[j], default=None)
        depth.append(1 + (depth[best] if best is not None else 0))
        prev.append(best)
    targets = [i for i, c in enumerate(cs) if c[2] == args.last_operation]
    if not targets:
        continue
    t = max(targets, key=lambda i: cs[i][0])
    chain, i = [], t
    while i is not None:
        chain.append(cs[i])
        i = prev[i]
    chain.reverse()
    depths.append(depth[t])
    chains.append((depth[t], chain, cs))

if not depths:
    sys.exit(f"no invocation of {args.log} has an `aws call` line for {args.last_operation}")
print(f"invocations: {len(depths)}")
print(f"sequential AWS calls up to and including the last {args.last_operation}: "
      f"median {statistics.median(depths)}, min {min(depths)}, max {max(depths)}")
print("histogram:", dict(sorted(collections.Counter(depths).items())))
mid = sorted(chains, key=lambda c: c[0])[len(chains) // 2]
t0 = mid[2][0][0]
print("a median invocation, every call (start..end ms after its first call; * = on the path):")
on_path = set(mid[1])
for s, e, op in mid[2]:
    print(f"  {'*' if (s, e, op) in on_path else ' '} {op:<18} {(s - t0) / 1000:7.2f} .. {(e - t0) / 1000:7.2f}")
