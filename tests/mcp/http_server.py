"""A small MCP server on PyPI's `mcp` SDK (FastMCP) over streamable HTTP, for tests/mcp.rs.

Usage: http_server.py PORT. Listens on 127.0.0.1 only. `grow` adds a tool at run time and tells clients with
`notifications/tools/list_changed`. The prompt `review` becomes keel's slash command `py:review`.
"""

import sys

import anyio

from mcp.server.fastmcp import Context, FastMCP

port = int(sys.argv[1])
server = FastMCP("keel-test-http", host="127.0.0.1", port=port, log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Returns its input, prefixed, so that a test can tell it went through this server."""
    return f"http echo: {text}"


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the given reason."""
    raise ValueError(reason)


@server.tool()
async def slow(seconds: float) -> str:
    """Sleeps, then answers: for timeouts and interrupts."""
    await anyio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Adds a tool called `name` that answers with its own name."""

    def added() -> str:
        return f"I am {name}"

    server.add_tool(added, name=name, description=f"added at run time as {name}")
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


@server.prompt()
def review(path: str, focus: str = "bugs") -> str:
    """Asks for a review of one file."""
    return f"Review {path}, looking for {focus}."


server.run(transport="streamable-http")
