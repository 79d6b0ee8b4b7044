"""The official Python MCP SDK (PyPI `mcp`, pinned by `make mcp-clients`) as a
client of `claude-failover mcp`: initialize, list the tools, call `status`,
`enqueue_task` and a tool that fails, read a resource, ping. Prints one JSON
document of what it saw, for tests/e2e/mcp_clients.rs to check.

Usage: python mcp_sdk_client.py PROJECT -- COMMAND ARGS...
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def wire(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def main() -> None:
    project = sys.argv[1]
    command = sys.argv[sys.argv.index("--") + 1 :]
    params = StdioServerParameters(command=command[0], args=command[1:])
    seen = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            seen["initialize"] = wire(await session.initialize())
            seen["tools"] = wire(await session.list_tools())["tools"]
            seen["status"] = wire(await session.call_tool("status", {}))
            seen["enqueue"] = wire(
                await session.call_tool("enqueue_task", {"project": project, "text": "From the Python SDK.\n", "name": "sdk.md"})
            )
            seen["missing"] = wire(await session.call_tool("task_status", {"project": project, "task": "never.md"}))
            seen["resource"] = wire(await session.read_resource("claude-failover://status"))
            seen["ping"] = wire(await session.send_ping())
    print(json.dumps(seen))


asyncio.run(main())
