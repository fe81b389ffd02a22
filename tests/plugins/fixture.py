#!/usr/bin/env python3
"""A plugin for tests/plugins.rs, with one behaviour per mode (argv[1]):

- throw: answers every hook with an error;
- hang: never answers a hook;
- die: exits when a hook arrives;
- decide: permission/ask denies `rm` commands and allows the rest, chat/params adds to the system prompt, sets the
  temperature and adds a header, tool/after marks outputs; its tool `sessions` asks the engine for `session/list`
  while the engine waits for it;
- provider: serves the provider `parrot` and its model `echo`, whose first turn calls bash and whose second repeats
  what the tool said.
"""

import json
import sys

MODE = sys.argv[1]
HOOKS = ["tool/before", "tool/after", "chat/params", "permission/ask"]

_next_id = 0


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def read():
    line = sys.stdin.buffer.readline()
    if not line:
        sys.exit(0)
    return json.loads(line)


def call(method, params):
    global _next_id
    _next_id += 1
    my_id = f"f{_next_id}"
    send({"jsonrpc": "2.0", "id": my_id, "method": method, "params": params})
    while True:
        message = read()
        if message.get("id") == my_id and "method" not in message:
            if "error" in message:
                raise RuntimeError(message["error"]["message"])
            return message["result"]
        handle(message)


def hang():
    """Never answers, and reads on so that the engine going away (end of stdin) ends it."""
    while sys.stdin.buffer.readline():
        pass
    sys.exit(0)


def answer(message):
    method, params = message["method"], message["params"]
    if MODE == "throw" and method != "tool/call":
        return None, {"code": -32000, "message": "the fixture throws"}
    if MODE == "hang" and method != "tool/call":
        hang()
    if MODE == "die" and method != "tool/call":
        sys.stderr.write("the fixture dies\n")
        sys.stderr.flush()
        sys.exit(3)
    if method == "permission/ask":
        command = " ".join(params["resources"])
        if "rm " in command:
            return {"decision": "deny", "message": "no deleting here"}, None
        return {"decision": "allow"}, None
    if method == "chat/params":
        return {"system": "Answer in French.", "temperature": 0.2, "headers": {"X-Fixture": "on"}}, None
    if method == "tool/after":
        return {"output": params["output"] + "\n[checked by the fixture]"}, None
    if method == "provider/stream":
        return stream(params), None
    if method == "tool/call":
        sessions = call("session/list", {})
        return {"output": f"{len(sessions['sessions'])} sessions"}, None
    return {}, None


def stream(params):
    def delta(*deltas):
        call("provider/delta", {"requestId": params["requestId"], "deltas": list(deltas)})

    last = params["messages"][-1]
    if last["role"] == "tool":
        delta({"type": "text", "text": "the tool said: "}, {"type": "text", "text": last["output"].strip()})
        return {"finishReason": "stop", "usage": {"input": 11, "output": 5}}
    if "bash" not in [t["name"] for t in params["tools"]] or not params["system"]:
        delta({"type": "text", "text": "no bash or no system prompt"})
        return {"finishReason": "stop"}
    command = {"command": "printf 'from the plugin model\\n'"}
    delta({"type": "text", "text": "let me look"}, {"type": "toolCall", "id": "t1", "name": "bash", "input": command})
    return {"finishReason": "tool_calls"}


def handle(message):
    if "id" not in message or "method" not in message:
        return
    result, error = answer(message)
    if error is not None:
        send({"jsonrpc": "2.0", "id": message["id"], "error": error})
    else:
        send({"jsonrpc": "2.0", "id": message["id"], "result": result})


call("initialize", {"protocolVersion": 1, "clientInfo": {"name": f"fixture-{MODE}"}})
send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
if MODE == "provider":
    call("provider/register", {"id": "parrot", "name": "Parrot", "models": [{"id": "echo", "contextWindow": 8000}]})
    while True:
        handle(read())
call("tool/register", {"tools": [{
    "name": "sessions",
    "description": "Counts the engine's sessions.",
    "inputSchema": {"type": "object", "properties": {}},
}]})
call("plugin/register", {"hooks": HOOKS})
while True:
    handle(read())
