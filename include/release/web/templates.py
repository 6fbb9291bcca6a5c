"""The Releases pages: Jinja2 templates (autoescaped) and the small SVG plots they embed."""

from __future__ import annotations

from datetime import timedelta
from html import escape

from jinja2 import DictLoader, Environment, select_autoescape
from markupsafe import Markup

from release.domain import dora

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Releases{% block title %}{% endblock %}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#1f2937;font-size:14px}
a{color:#0b63ce;text-decoration:none} a:hover{text-decoration:underline}
nav a{margin-right:14px;font-weight:600} nav{margin-bottom:12px;border-bottom:1px solid #e5e7eb;padding-bottom:8px}
table{border-collapse:collapse;width:100%} th,td{border:1px solid #e5e7eb;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f3f4f6;position:sticky;top:0}
.badge{display:inline-block;border-radius:8px;padding:0 6px;font-size:11px;margin-right:3px;border:1px solid}
.ok{background:#ecfdf5;color:#047857;border-color:#a7f3d0} .bad{background:#fef2f2;color:#b91c1c;border-color:#fecaca}
.none{background:#f9fafb;color:#6b7280;border-color:#e5e7eb} .warn{background:#fffbeb;color:#b45309;border-color:#fde68a}
tr.blocking td:first-child{border-left:4px solid #dc2626} .behind{color:#b45309;font-weight:600;font-size:12px}
.muted{color:#6b7280;font-size:12px} .v{font-weight:600} code{font-size:12px}
.figs{display:flex;gap:12px;flex-wrap:wrap} .fig{border:1px solid #e5e7eb;border-radius:6px;padding:8px 12px;min-width:170px}
.fig b{font-size:20px;display:block} form{margin:8px 0}
</style></head><body>
<nav><a href="{{ root }}ui/">Matrix</a><a href="{{ root }}ui/pending">Pending</a><a href="{{ root }}ui/operations">Operations</a><a href="{{ root }}ui/dora">DORA</a>
<span class="muted">signed in as {{ user }}{% if commit %} &middot; GitOps commit <code>{{ commit[:12] }}</code>{% endif %}</span></nav>
{% block body %}{% endblock %}
</body></html>"""

_MATRIX = """{% extends "base.html" %}{% block body %}
<h2>Releases: services &times; environments</h2>
<form method="get" action="{{ root }}ui/">
<input name="name" placeholder="service name" value="{{ name }}"> <input name="owner" placeholder="owner" value="{{ owner }}">
<label><input type="checkbox" name="blocking" value="true" {% if blocking %}checked{% endif %}> blocking re-scan only</label>
<button type="submit">Filter</button>
<span class="muted">{{ m.total }} services{% if m.blocking %}, <span class="badge bad">{{ m.blocking }} with a blocking re-scan finding</span>{% endif %}</span>
</form>
<table id="matrix"><thead><tr><th>service</th>{% for env in m.envs %}<th>{{ env }}</th>{% endfor %}</tr></thead><tbody>
{% for r in m.rows %}<tr class="{{ 'blocking' if r.blocking else '' }}" data-service="{{ r.service }}">
<td><a class="service" href="{{ root }}ui/services/{{ r.service|urlencode }}">{{ r.service }}</a>
<div class="muted">{{ r.owners|join(", ") }}</div>{% if r.blocking %}<span class="badge bad">blocking re-scan finding</span>{% endif %}</td>
{% for env in m.envs %}{% set c = r.cells[env] %}<td data-env="{{ env }}">{% if c %}
<span class="v">{{ c.version }}</span> <code title="{{ c.image }}">{{ c.digest }}</code>
<div class="muted">{{ age(c.deployed_at, now) }} ago by {{ c.deployed_by }}{% if c.approved_by %}, approved by {{ c.approved_by }}{% endif %}</div>
<span class="badge {{ {'passed':'ok','blocked':'bad'}.get(c.scan,'none') }}">scan {{ c.scan }}</span>
<span class="badge {{ {'passed':'ok','blocking':'bad'}.get(c.rescan,'none') }}" title="{{ c.rescan_blocking|join(', ') }}">re-scan {{ c.rescan }}</span>
<span class="badge {{ 'ok' if c.signed else 'none' }}">{{ 'signed' if c.signed else 'unsigned' }}</span>
<span class="badge {{ {'passed':'ok','pending':'warn'}.get(c.smoke,'none') }}">smoke {{ c.smoke }}</span>
{% if c.differs %}<div class="behind">{% if c.behind %}{{ env }} {{ c.behind }} version{{ 's' if c.behind != 1 else '' }} behind {{ m.envs[loop.index0 - 1] }}{% elif c.behind == 0 %}ahead of {{ m.envs[loop.index0 - 1] }}{% else %}differs from {{ m.envs[loop.index0 - 1] }}{% endif %}</div>{% endif %}
{% else %}<span class="muted">&ndash;</span>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
<p>Page {{ m.page }} of {{ m.pages }}
{% if m.page > 1 %}<a href="{{ root }}ui/?name={{ name|urlencode }}&owner={{ owner|urlencode }}&blocking={{ 'true' if blocking else '' }}&page={{ m.page - 1 }}">&larr; previous</a>{% endif %}
{% if m.page < m.pages %}<a href="{{ root }}ui/?name={{ name|urlencode }}&owner={{ owner|urlencode }}&blocking={{ 'true' if blocking else '' }}&page={{ m.page + 1 }}">next &rarr;</a>{% endif %}</p>
{% endblock %}"""

_SERVICE = """{% extends "base.html" %}{% block title %}: {{ s.row.service }}{% endblock %}{% block body %}
<h2 id="service-name">{{ s.row.service }}</h2><p class="muted">owners: {{ s.row.owners|join(", ") }}</p>
<table><tr>{% for env in s.envs %}<th>{{ env }}</th>{% endfor %}</tr><tr>{% for env in s.envs %}{% set c = s.row.cells[env] %}
<td>{% if c %}<span class="v">{{ c.version }}</span> <code>{{ c.digest }}</code><div class="muted">{{ age(c.deployed_at, now) }} ago by {{ c.deployed_by }}</div>{% else %}&ndash;{% endif %}</td>{% endfor %}</tr></table>
<h3>Timeline</h3>{{ timeline }}
<h3>History</h3>
<table id="history"><thead><tr><th>#</th><th>at</th><th>env</th><th>what</th><th>outcome</th><th>requester</th><th>approver</th><th>reason</th><th>run</th></tr></thead><tbody>
{% for e in s.entries %}<tr><td>{{ e.id }}</td><td>{{ e.at }}</td><td>{{ e.env }}</td>
<td>{{ 'automatic rollback' if e.action == 'rollback' and e.reason.startswith('automatic rollback') else 'rollback' if e.action == 'rollback' else ('promotion' if e.evidence.get('promoted_from') else 'deployment') }}
{{ e.previous_version or '(none)' }} &rarr; <b>{{ e.version }}</b></td>
<td><span class="badge {{ {'deployed':'ok','failed':'bad','rolled_back':'warn'}.get(e.outcome,'none') }}">{{ e.outcome }}</span></td>
<td>{{ e.by }}</td><td>{{ e.approved_by or '' }}</td><td>{{ e.reason }}</td>
<td>{% set dr = e.evidence.get('deploy_run') if e.action == 'deploy' else None %}{% if dr and '/' in dr %}<a href="{{ ui }}/dags/{{ dr.split('/')[0]|urlencode }}/runs/{{ dr.split('/', 1)[1]|urlencode }}">{{ dr }}</a>{% else %}<span class="muted">run {{ e.run_id }}</span>{% endif %}</td></tr>
{% endfor %}</tbody></table>
<h3>Versions and their scan evidence</h3>
<table><thead><tr><th>version</th><th>commit</th><th>ran in</th><th>pipeline scan</th><th>nightly re-scan</th></tr></thead><tbody>
{% for v in s.versions %}<tr><td>{{ v.version }}</td><td><code>{{ (v.commit or '')[:12] }}</code> <span class="muted">{{ v.commit_time or '' }}</span></td><td>{{ v.envs|join(", ") }}</td>
<td>{% if v.scan %}<span class="badge {{ 'ok' if v.scan.passed else 'bad' }}">{{ 'passed' if v.scan.passed else 'blocked' }}</span>
<span class="muted">{% for k, n in (v.scan.counts or {}).items() %}{{ k }} {{ n }} {% endfor %}{{ (v.scan.blocking or [])|join(", ") }}</span>{% else %}&ndash;{% endif %}</td>
<td>{% if v.rescan %}<span class="badge {{ 'ok' if v.rescan.passed else 'bad' }}">{{ 'passed' if v.rescan.passed else 'blocking' }}</span>
<span class="muted">{{ (v.rescan.blocking or [])|join(", ") }} {{ v.rescan.scanned_at or '' }}</span>{% else %}&ndash;{% endif %}</td></tr>
{% endfor %}</tbody></table>
{% endblock %}"""

_PENDING = """{% extends "base.html" %}{% block body %}
<h2>Pending</h2>{% if p.error %}<p class="badge bad">{{ p.error }}</p>{% endif %}
<h3>Waiting for approval</h3>{% if p.approvals %}<table><tr><th>what</th><th>run</th><th>approvers</th><th>since</th></tr>
{% for a in p.approvals %}<tr><td>{{ a.subject }}</td><td><a href="{{ ui }}/dags/{{ a.dag_id|urlencode }}/runs/{{ a.run_id|urlencode }}">{{ a.dag_id }} {{ a.run_id }}</a></td>
<td>{{ a.assigned_users|join(", ") }}</td><td>{{ a.created_at }}</td></tr>{% endfor %}</table>
<p><a href="{{ ui }}/required_actions?response_received=false">Answer them in Required Actions</a></p>{% else %}<p class="muted">none</p>{% endif %}
<h3>Runs queued or running</h3>{% if p.queued %}<table><tr><th>DAG</th><th>run</th><th>state</th><th>queued at</th><th>triggered by</th></tr>
{% for r in p.queued %}<tr><td>{{ r.dag_id }}</td><td><a href="{{ ui }}/dags/{{ r.dag_id|urlencode }}/runs/{{ r.run_id|urlencode }}">{{ r.run_id }}</a></td><td>{{ r.state }}</td><td>{{ r.queued_at or '' }}</td><td>{{ r.triggered_by or '' }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">none</p>{% endif %}
<h3>Deploy freezes</h3>{% if p.freezes %}<table><tr><th>env</th><th>from</th><th>until</th><th>reason</th><th></th></tr>
{% for f in p.freezes %}<tr><td>{{ f.env }}</td><td>{{ f.start }}</td><td>{{ f.end }}</td><td>{{ f.reason }}</td><td>{% if f.active %}<span class="badge bad">active</span>{% else %}<span class="badge none">upcoming</span>{% endif %}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">none</p>{% endif %}
{% endblock %}"""

_OPERATIONS = """{% extends "base.html" %}{% block body %}
<h2>Operations</h2>
<h3>Last backup per environment</h3><table><tr><th>env</th><th>backup</th><th>phase</th><th>age</th><th>last completed</th></tr>
{% for b in o.backups %}<tr><td>{{ b.env }}</td><td>{{ b.backup.name if b.backup else '' }}</td>
<td>{% if b.backup %}<span class="badge {{ 'ok' if b.backup.phase == 'Completed' else 'bad' }}">{{ b.backup.phase }}</span>{% else %}<span class="muted">never</span>{% endif %}</td>
<td>{{ b.age }}</td><td>{{ b.last_completed or '' }}</td></tr>{% endfor %}</table>
<h3>Last restore drill</h3>{% set d = o.drill %}{% if d %}<p>{{ d.env }} at {{ d.recorded_at }} from {{ d.backup or '-' }}:
<span class="badge {{ 'ok' if d.restored and d.smoke_passed else 'bad' }}">{{ 'passed' if d.restored and d.smoke_passed else 'failed' }}</span>
recovery time <b>{{ '%.0f s'|format(d.recovery_seconds) if d.recovery_seconds is not none else '-' }}</b> {{ d.problems|join("; ") }}</p>{% else %}<p class="muted">no drill yet</p>{% endif %}
<h3>Nightly re-scan</h3>{% set r = o.rescan %}<p>{% if r.run %}last run <a href="{{ ui }}/dags/image-rescan/runs/{{ r.run.run_id|urlencode }}">{{ r.run.run_id }}</a>: <span class="badge {{ 'ok' if r.run.state == 'success' else 'bad' if r.run.state == 'failed' else 'none' }}">{{ r.run.state }}</span>{% else %}<span class="muted">no run yet</span>{% endif %}
{% if r.last_recorded %}; last result recorded {{ r.last_recorded }}{% endif %}</p>
{% if r.blocking %}<p><span class="badge bad">blocking findings</span> {{ r.blocking|join(", ") }}</p>{% else %}<p class="muted">no blocking findings recorded</p>{% endif %}
{% endblock %}"""

_DORA = """{% extends "base.html" %}{% block body %}
<h2>DORA metrics</h2>
<form method="get" action="{{ root }}ui/dora">env <select name="env">{% for e in view.envs %}<option {% if e == env %}selected{% endif %}>{{ e }}</option>{% endfor %}</select>
days <select name="days">{% for n in days_options %}<option {% if n == days %}selected{% endif %}>{{ n }}</option>{% endfor %}</select>
service <input name="service" value="{{ service }}" placeholder="all"> <button type="submit">Show</button></form>
{% set f = d.figures %}
<div class="figs">
<div class="fig">deployment frequency<b>{{ f.deployments }}</b><span class="muted">{{ '%.2f'|format(f.deployments_per_day) }} per day; {{ f.rollbacks }} rollbacks</span></div>
<div class="fig">change lead time (median)<b>{{ human(f.lead_time_median_s) }}</b><span class="muted">p90 {{ human(f.lead_time_p90_s) }}; {{ f.lead_time_known }} with a commit time</span></div>
<div class="fig">change fail rate<b>{{ '%.0f %%'|format(f.change_fail_rate * 100) if f.change_fail_rate is not none else '-' }}</b><span class="muted">{{ f.failed_deployments }} of {{ f.deployments }} rolled back</span></div>
<div class="fig">failed deployment recovery time<b>{{ human(f.recovery_median_s) }}</b><span class="muted">median of {{ f.recoveries }}</span></div>
</div>
<h3>Trend ({{ env }}, last {{ days }} days)</h3>{{ trend }}
<h3>Per environment</h3><table><tr><th>env</th><th>deployments</th><th>lead time</th><th>fail rate</th><th>recovery</th></tr>
{% for e, g in per_env.items() %}<tr><td>{{ e }}</td><td>{{ g.deployments }}</td><td>{{ human(g.lead_time_median_s) }}</td>
<td>{{ '%.0f %%'|format(g.change_fail_rate * 100) if g.change_fail_rate is not none else '-' }}</td><td>{{ human(g.recovery_median_s) }}</td></tr>{% endfor %}</table>
<p class="muted">Definitions as dora.dev gives them; rollbacks are not counted as deployments. From the command line:
<code>python -m release metrics dora --env {{ env }} --days {{ days }}</code></p>
{% endblock %}"""

_env = Environment(
    loader=DictLoader({"base.html": _BASE, "matrix.html": _MATRIX, "service.html": _SERVICE, "pending.html": _PENDING,
                       "operations.html": _OPERATIONS, "dora.html": _DORA}),
    autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context) -> str:
    # Links inside the view are relative to /release/ (where this app is mounted).
    context.setdefault("commit", getattr(context.get("view"), "commit", None))
    return _env.get_template(template).render(root=context["ui"] + "/release/", **context)


_COLOURS = {"deployed": "#059669", "failed": "#dc2626", "rolled_back": "#d97706"}


def timeline_svg(entries: list, envs: list[str], width: int = 900) -> Markup:
    """One row per environment, one dot per deployment (green), failed (red), rolled back (amber);
    a rollback is drawn as a ring. Newest at the right."""
    if not entries:
        return Markup('<p class="muted">nothing deployed yet</p>')
    times = [dora.parse_time(e.at) for e in entries]
    lo, hi = min(times), max(times)
    span = (hi - lo) or timedelta(seconds=1)
    left, row_h = 70, 26
    height = row_h * len(envs) + 30
    parts = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for i, env in enumerate(envs):
        y = 15 + i * row_h
        parts.append(f'<text x="0" y="{y + 4}" font-size="12">{escape(env)}</text>'
                     f'<line x1="{left}" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#e5e7eb"/>')
    for e, t in zip(entries, times):
        if e.env not in envs:
            continue
        x = left + (width - left - 20) * ((t - lo) / span)
        y = 15 + envs.index(e.env) * row_h
        colour = _COLOURS.get(e.outcome, "#6b7280")
        fill = "white" if e.action == "rollback" else colour
        parts.append(f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="{fill}" stroke="{colour}" stroke-width="2">'
                     f'<title>{escape(f"{e.at} {e.env} {e.action} {e.version} ({e.outcome}) by {e.by}")}</title></circle>')
    parts.append(f'<text x="{left}" y="{height - 4}" font-size="11" fill="#6b7280">{escape(lo.isoformat())}</text>'
                 f'<text x="{width - 10}" y="{height - 4}" font-size="11" fill="#6b7280" text-anchor="end">{escape(hi.isoformat())}</text></svg>')
    return Markup("".join(parts))


def trend_svg(trend: list, width: int = 900, height: int = 140) -> Markup:
    """Deployments per period (bars, failed part red) and the median lead time (line)."""
    if not trend:
        return Markup("")
    n = len(trend)
    top = max([t.deployments for t in trend] + [1])
    lead_top = max([t.lead_time_median_s or 0 for t in trend] + [1])
    bw = (width - 40) / n
    parts = [f'<svg id="trend" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20}" role="img">']
    points = []
    for i, t in enumerate(trend):
        x = 30 + i * bw
        h = (height - 10) * t.deployments / top
        fh = (height - 10) * t.failed_deployments / top
        label = escape(f"{t.start[:10]}: {t.deployments} deployments, {t.failed_deployments} failed, "
                       f"lead time {dora.human_duration(t.lead_time_median_s)}")
        parts.append(f'<rect x="{x + 2:.1f}" y="{height - h:.1f}" width="{bw - 4:.1f}" height="{h:.1f}" fill="#93c5fd"><title>{label}</title></rect>')
        if fh:
            parts.append(f'<rect x="{x + 2:.1f}" y="{height - fh:.1f}" width="{bw - 4:.1f}" height="{fh:.1f}" fill="#f87171"/>')
        if t.lead_time_median_s is not None:
            points.append(f"{x + bw / 2:.1f},{height - (height - 10) * t.lead_time_median_s / lead_top:.1f}")
    if len(points) > 1:
        parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#7c3aed" stroke-width="2"/>')
    parts.append(f'<text x="30" y="{height + 15}" font-size="11" fill="#6b7280">{escape(trend[0].start[:10])}: bars deployments '
                 f'(red: later rolled back), line median lead time</text></svg>')
    return Markup("".join(parts))
