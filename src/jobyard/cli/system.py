"""``jobyard system``: the service's status: nodes, slots, the queue, throughput, sandbox."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.console import Group, JustifyMethod, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from jobyard.cli import common, render
from jobyard.cli.common import ApiKeyOption, JsonOption, UrlOption
from jobyard.sdk.models import NodeStatus, SystemStatus

OVERALL_STYLES = {"healthy": "bold green", "degraded": "bold yellow", "unhealthy": "bold red"}
NODE_STYLES = {"active": "green", "stale": "yellow", "stopped": "dim"}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _age(now: datetime, then: datetime | None) -> str:
    """``1.2s ago`` measured on the server's clock (no skew with this machine's)."""
    if then is None:
        return "-"
    return f"{render.format_duration(max(0.0, (now - then).total_seconds() * 1000))} ago"


def _yes_no(value: bool, why_not: str | None) -> Text:
    if value:
        return Text("yes", style="green")
    return Text("no", style="yellow").append(f": {why_not}" if why_not else "", style="")


def nodes_table(nodes: list[NodeStatus], now: datetime) -> Table:
    """One row per node: id, host, status, slots used/capacity, CPU, memory, your jobs,
    last heartbeat."""
    table = Table(show_edge=False, header_style="bold", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("node", "left"),
        ("host", "left"),
        ("status", "left"),
        ("slots", "right"),
        ("cpu", "right"),
        ("memory", "right"),
        ("your jobs", "right"),
        ("heartbeat", "right"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify, overflow="fold")
    for n in nodes:
        table.add_row(
            n.node_id,
            n.hostname,
            Text(n.status, style=NODE_STYLES.get(n.status, "")),
            f"{n.used_slots}/{n.job_capacity}",
            _percent(n.cpu_percent),
            _percent(n.memory_percent),
            str(n.active_jobs),
            _age(now, n.last_heartbeat_at),
        )
    return table


def queue_table(s: SystemStatus) -> Table:
    """Your queued jobs by priority, highest first, then scheduled and running."""
    q = s.queue_statistics
    table = Table(show_edge=False, header_style="bold")
    table.add_column("queue")
    table.add_column("jobs", justify="right")
    for name in ("critical", "high", "normal", "low"):
        table.add_row(f"queued {name}", str(getattr(q.by_priority, name)))
    table.add_row("queued (all)", str(q.total_queued), style="bold")
    table.add_row("scheduled", str(q.scheduled))
    table.add_row("running", str(q.running))
    return table


def _grid(rows: list[tuple[str, RenderableType]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def _throughput(s: SystemStatus) -> str:
    p = s.performance_metrics
    outcomes = p.by_outcome
    parts = [
        f"{p.jobs_completed_today} ended today",
        f"{outcomes.succeeded} succeeded · {outcomes.failed} failed · "
        f"{outcomes.timed_out} timed out · {outcomes.cancelled} cancelled",
    ]
    return "; ".join(parts)


def status_view(s: SystemStatus) -> RenderableType:
    """The whole view: overall status, nodes, queue, throughput, resources, sandbox."""
    q, p, r = s.queue_statistics, s.performance_metrics, s.resource_utilization
    title = Text("jobyard ").append(s.system_status, style=OVERALL_STYLES.get(s.system_status, ""))
    title.append(f" · {render.format_time(s.timestamp)}", style="dim")
    parts: list[RenderableType] = [title, Text("\nnodes", style="bold")]
    if s.execution_nodes:
        parts.append(nodes_table(s.execution_nodes, s.timestamp))
    else:
        parts.append(Text("no node has registered", style="yellow"))
    parts += [Text("\nyour jobs", style="bold"), queue_table(s), Text()]
    success = "-" if p.success_rate_percent is None else f"{p.success_rate_percent:.1f}%"
    memory = "-"
    if r.memory_total_bytes is not None and r.memory_used_bytes is not None:
        memory = (
            f"{render.format_bytes(r.memory_used_bytes)} of "
            f"{render.format_bytes(r.memory_total_bytes)}"
        )
    rows: list[tuple[str, RenderableType]] = [
        ("average wait", render.format_duration(q.average_wait_ms) + " (last hour)"),
        ("estimated drain", render.format_duration(q.estimated_drain_ms)),
        ("throughput", f"{p.throughput_per_hour:g} jobs ended in the last hour"),
        ("today", _throughput(s)),
        ("success rate", f"{success} (today; cancels do not count)"),
        ("average duration", render.format_duration(p.average_duration_ms) + " (succeeded today)"),
        ("slots in use", f"{r.used_slots} of {r.total_slots} (active nodes, every tenant)"),
        ("memory", memory),
        ("disk free", render.format_bytes(r.disk_free_bytes)),
    ]
    if s.sandbox is not None:
        sb = s.sandbox
        rows.append(("jobs sandboxed", _yes_no(sb.jobs_sandboxed, sb.sandbox_unavailable)))
        rows.append(("kernel limits", _yes_no(sb.kernel_limits, sb.kernel_limits_unavailable)))
    else:
        rows.append(("jobs sandboxed", Text("unknown (the server does not say)", style="dim")))
    parts.append(_grid(rows))
    return Panel(Group(*parts), title="system", title_align="left", expand=False)


def system(
    json_out: JsonOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """The service's status: nodes and their slots, your queue by priority, throughput,
    resources and whether the answering server sandboxes jobs."""
    with common.handle_errors(), common.make_client(url, api_key) as client:
        found = client.system_status()
    if json_out:
        typer.echo(found.model_dump_json(indent=2))
    else:
        common.out().print(status_view(found))
