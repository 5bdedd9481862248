"""The local management API (@connections) driven by boto3, AWS's Python SDK: a second SDK that
parses AWS's wire format by itself (botocore's apigatewaymanagementapi model), so field names,
casing, status codes and error types that only happen to please the Rust SDK show up here.

Run by tests/management_api.rs with: <management endpoint incl. stage> <HTTP API url>
<connection id>. Exits non-zero (an AssertionError or botocore's exception) on any mismatch.
"""

import datetime
import json
import sys
import urllib.request

import boto3
import botocore.config
import botocore.exceptions

endpoint, http_url, connection_id = sys.argv[1:4]


def client(url):
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        # One attempt: what the service answers, not what retries make of it.
        config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def fault_switch(path, body):
    req = urllib.request.Request(
        http_url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req) as r:
        assert r.status == 200, r.status


def expect_error(call, code, status):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        got_status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert (got, got_status) == (code, status), (got, got_status, e.response)
        return e
    raise AssertionError(f"expected {code}")


c = client(endpoint)

# GetConnection: every field of the model parsed from its wire name.
info = c.get_connection(ConnectionId=connection_id)
assert info["ResponseMetadata"]["HTTPStatusCode"] == 200, info
assert isinstance(info["ConnectedAt"], datetime.datetime), info
assert isinstance(info["LastActiveAt"], datetime.datetime), info
assert info["LastActiveAt"] >= info["ConnectedAt"], info
assert info["Identity"]["SourceIp"] == "127.0.0.1", info
assert "UserAgent" in info["Identity"], info

# PostToConnection.
r = c.post_to_connection(ConnectionId=connection_id, Data=b"from boto3")
assert r["ResponseMetadata"]["HTTPStatusCode"] == 200, r

# Over 128 KB: PayloadTooLargeException, with its message member.
e = expect_error(
    lambda: c.post_to_connection(ConnectionId=connection_id, Data=b"x" * (128 * 1024 + 1)),
    "PayloadTooLargeException",
    413,
)
assert e.response["Error"]["Message"], e.response

# Throttled (the fault switch stands in for API Gateway's limits): LimitExceededException.
fault_switch("/_local/faults/management", {"failureRate": 1.0, "error": "LimitExceededException"})
try:
    expect_error(
        lambda: c.post_to_connection(ConnectionId=connection_id, Data=b"throttled"),
        "LimitExceededException",
        429,
    )
    expect_error(lambda: c.get_connection(ConnectionId=connection_id), "LimitExceededException", 429)
finally:
    fault_switch("/_local/faults/management", {"failureRate": 0.0})

# A stage the API does not have: ForbiddenException.
stageless = endpoint.rsplit("/", 1)[0]
expect_error(
    lambda: client(stageless + "/nostage").post_to_connection(ConnectionId=connection_id, Data=b"x"),
    "ForbiddenException",
    403,
)

# DeleteConnection, then the connection is gone for every operation.
r = c.delete_connection(ConnectionId=connection_id)
assert r["ResponseMetadata"]["HTTPStatusCode"] == 204, r
expect_error(lambda: c.get_connection(ConnectionId=connection_id), "GoneException", 410)
expect_error(
    lambda: c.post_to_connection(ConnectionId=connection_id, Data=b"late"), "GoneException", 410
)
expect_error(lambda: c.delete_connection(ConnectionId=connection_id), "GoneException", 410)
expect_error(lambda: c.get_connection(ConnectionId="nosuchconnid="), "GoneException", 410)

print(json.dumps({"ok": True}))
