"""Prometheus metrics, one registry per gateway so several gateways can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter("mcp_gateway_tool_calls", "Upstream tool calls", ["server", "tool", "via", "outcome"],
                             registry=self.registry)
        self.latency = Histogram("mcp_gateway_tool_call_seconds", "Upstream tool call latency", ["server", "tool"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.scripts = Counter("mcp_gateway_script_runs", "executeToolCode runs by how they ended", ["outcome"],
                               registry=self.registry)
        self.upstream_up = Gauge("mcp_gateway_upstream_up", "1 when the upstream session is ready", ["server"],
                                 registry=self.registry)
        self.tokens_saved = Counter(
            "mcp_gateway_tokens_saved",
            "Estimated tool-definition tokens not sent: code-mode tools' definitions minus the meta-tools, per listing",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
