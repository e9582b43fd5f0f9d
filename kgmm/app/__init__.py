"""The use cases the interfaces call: ingest, answers (search, neighbourhood, path), export, viz, demo.

Each is a function a CLI command, an HTTP route or an MCP tool can call as is; this layer sits above the tasks
and below the benchmarks and the CLI.
"""
