#!/usr/bin/env python3
"""A keel plugin in plain Python (standard library only).

keel starts it from config and speaks its own JSON-RPC protocol with it on stdin/stdout, one JSON object per line:

    "plugins": { "pipefail": { "command": ["python3", "examples/plugins/pipefail.py"] } }

It does two things:
- registers a tool, `word_count`, that the model can call (permission action `plugin`, resource
  `pipefail/word_count`);
- hooks `tool/before` to rewrite every `bash` command so that it runs with `set -o pipefail`: a pipeline whose
  first stage fails (`make | tee log`) then fails too, instead of looking like success.

With PIPEFAIL_EVENT_LOG set, it also hooks `event` and appends each event's type to that file.
"""

import json
import os
import sys

EVENT_LOG = os.environ.get("PIPEFAIL_EVENT_LOG")
PREFIX = "set -o pipefail; "

_next_id = 0


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def call(method, params):
    """Sends a request to keel and serves keel's own requests until the answer comes."""
    global _next_id
    _next_id += 1
    my_id = f"p{_next_id}"
    send({"jsonrpc": "2.0", "id": my_id, "method": method, "params": params})
    while True:
        message = read()
        if message is None:
            sys.exit(0)
        if message.get("id") == my_id and "method" not in message:
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']['message']}")
            return message["result"]
        handle(message)


def read():
    line = sys.stdin.buffer.readline()
    if not line:
        return None
    return json.loads(line)


def word_count(params):
    text = params["input"].get("text", "")
    return {"output": f"{len(text.split())} words"}


def before(params):
    if params["tool"] != "bash":
        return {}
    command = params["input"].get("command", "")
    if command.startswith(PREFIX):
        return {}
    return {"input": {**params["input"], "command": PREFIX + command}}


def event(params):
    with open(EVENT_LOG, "a", encoding="utf-8") as log:
        log.write(params["event"]["type"] + "\n")


REQUESTS = {
    "tool/call": word_count,
    "tool/before": before,
}


def handle(message):
    method = message.get("method")
    if "id" not in message:
        if method == "event" and EVENT_LOG:
            event(message["params"])
        return
    handler = REQUESTS.get(method)
    if handler is None:
        send({"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": f"no method {method}"}})
        return
    send({"jsonrpc": "2.0", "id": message["id"], "result": handler(message["params"])})


def main():
    call("initialize", {"protocolVersion": 1, "clientInfo": {"name": "pipefail", "version": "1"}})
    send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    call("tool/register", {"tools": [{
        "name": "word_count",
        "description": "Counts the words of a text.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    }]})
    hooks = ["tool/before"] + (["event"] if EVENT_LOG else [])
    call("plugin/register", {"hooks": hooks})
    while True:
        message = read()
        if message is None:
            return
        handle(message)


if __name__ == "__main__":
    main()
