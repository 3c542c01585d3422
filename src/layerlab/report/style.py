"""The page's stylesheet and its one small script, inlined into every report (no file, font or
script is ever fetched). The page reads fully without the script: it only filters the paper list."""

CSS = """
:root { --ink:#1d2330; --muted:#5b6475; --line:#dde2ea; --soft:#f5f7fa; --accent:#2456a6;
  --good:#1a7f37; --good-bg:#dcf3e2; --bad:#b42318; --bad-bg:#fde4e1; --meh:#8a5a00; --meh-bg:#fdf0cf;
  --info:#1f4f99; --info-bg:#dde9fb; --none:#5b6475; --none-bg:#eceff3; }
* { box-sizing: border-box; }
html { font-size: 15px; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5;
  font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", Roboto, Helvetica, Arial, sans-serif; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; font-size: .86em; }
header.top { background: #17233b; color: #fff; padding: 22px 32px 18px; }
header.top h1 { margin: 0 0 6px; font-size: 1.75rem; font-weight: 650; letter-spacing: -.01em; }
header.top h1 span { color: #9fb6e0; font-weight: 400; }
header.top dl { display: flex; flex-wrap: wrap; gap: 4px 28px; margin: 0; font-size: .9rem; color: #c9d5ea; }
header.top dt { display: inline; color: #8ea3c8; } header.top dd { display: inline; margin: 0 0 0 6px; }
header.top code { color: #fff; }
.layout { display: grid; grid-template-columns: 230px minmax(0, 1fr); }
nav.toc { position: sticky; top: 0; align-self: start; max-height: 100vh; overflow-y: auto;
  padding: 20px 12px 20px 24px; border-right: 1px solid var(--line); font-size: .88rem; background: var(--soft); }
nav.toc h2 { font-size: .75rem; text-transform: uppercase; letter-spacing: .08em; color: var(--muted); margin: 0 0 8px; }
nav.toc ol { list-style: none; margin: 0; padding: 0; }
nav.toc ol ol { padding-left: 12px; margin: 2px 0 8px; font-size: .84rem; }
nav.toc li { margin: 2px 0; }
nav.toc a { color: var(--ink); text-decoration: none; display: block; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
nav.toc a:hover { color: var(--accent); }
main { padding: 8px 36px 60px; max-width: 1180px; }
section { margin-top: 26px; }
h2 { font-size: 1.4rem; margin: 28px 0 6px; padding-bottom: 6px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 1.1rem; margin: 26px 0 6px; }
h4 { font-size: .95rem; margin: 16px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .05em; }
p.lede { color: var(--muted); margin: 4px 0 14px; max-width: 75ch; }
a { color: var(--accent); }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin: 18px 0 4px; }
.tile { flex: 0 1 auto; border: 1px solid var(--line); border-radius: 8px; padding: 10px 18px; min-width: 130px; background: #fff; }
.tile b { display: block; font-size: 1.5rem; line-height: 1.2; }
.tile > span { color: var(--muted); font-size: .85rem; white-space: nowrap; }
.tile .n-supported { color: var(--good); } .tile .n-contradicted { color: var(--bad); } .tile .n-inconclusive { color: var(--meh); }
.scroll { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: .9rem; width: auto; }
caption { text-align: left; font-weight: 600; padding: 4px 0 6px; }
caption small { font-weight: 400; color: var(--muted); }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; text-align: left; }
thead th { background: var(--soft); border-bottom: 2px solid #c5ccd8; font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #eef3fb; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.wide { width: 100%; }
table.papers .title { display: block; min-width: 26ch; font-weight: 500; }
table.papers .meta { display: block; font-size: .8rem; color: var(--muted); }
table.papers .note { display: block; min-width: 28ch; max-width: 46ch; color: var(--muted); font-size: .85rem; }
table.papers code.sys { display: inline-block; max-width: 34ch; }
h4.suite { text-transform: none; letter-spacing: 0; color: var(--ink); font-size: 1rem; }
.part { margin: 8px 0 4px 12px; padding-left: 12px; border-left: 2px solid var(--line); }
span.rule { font-size: .85rem; display: inline-block; min-width: 16ch; }
table.verdicts { width: 100%; }
table.verdicts td:first-child { white-space: nowrap; }
table.details thead th { white-space: normal; }
dl.inline { display: flex; flex-wrap: wrap; gap: 2px 20px; font-size: .88rem; margin: 6px 0; }
dl.inline dt { color: var(--muted); } dl.inline dt::after { content: ":"; } dl.inline dd { margin: 0 0 0 -14px; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: .8rem; font-weight: 600; white-space: nowrap; }
.b-supported, .b-better, .b-implemented { color: var(--good); background: var(--good-bg); }
.b-contradicted, .b-worse { color: var(--bad); background: var(--bad-bg); }
.b-inconclusive, .b-partial { color: var(--meh); background: var(--meh-bg); }
.b-checked, .b-base { color: var(--info); background: var(--info-bg); }
.b-missing, .b-x, .b-unknown { color: var(--none); background: var(--none-bg); }
.bar { display: flex; height: 12px; width: 220px; border-radius: 3px; overflow: hidden; background: var(--none-bg); }
.bar i { display: block; height: 100%; }
.s-checked { background: #3b73c4; } .s-implemented { background: #3aa35b; } .s-partial { background: #e0a526; } .s-missing { background: #cfd5df; }
.legend { display: flex; gap: 16px; font-size: .82rem; color: var(--muted); margin: 4px 0; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
.filters { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin: 10px 0 4px; font-size: .9rem; }
.filters input, .filters select { font: inherit; padding: 4px 8px; border: 1px solid #c5ccd8; border-radius: 5px; }
.filters input { width: 280px; }
article.verdict { border: 1px solid var(--line); border-left: 5px solid var(--none); border-radius: 6px; padding: 4px 20px 12px; margin: 18px 0; }
article.v-supported { border-left-color: var(--good); } article.v-contradicted { border-left-color: var(--bad); }
article.v-inconclusive { border-left-color: #d99a00; }
article.verdict h3 { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
blockquote { margin: 8px 0 10px; padding: 6px 14px; border-left: 3px solid #c5ccd8; color: #333c4d; background: var(--soft); font-style: italic; max-width: 90ch; }
dl.facts { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 3px 16px; margin: 8px 0; font-size: .9rem; }
dl.facts dt { color: var(--muted); }
code.kv { background: var(--soft); border: 1px solid var(--line); padding: 0 6px; border-radius: 4px; margin-right: 4px; white-space: nowrap; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.warn { color: var(--bad); font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 14px; }
figure.chart { margin: 6px 0; }
figure.chart figcaption { font-size: .82rem; color: var(--muted); display: flex; flex-wrap: wrap; gap: 4px 14px; padding-left: 58px; }
figure.chart .key i { display: inline-block; width: 16px; height: 3px; margin-right: 5px; vertical-align: 3px; }
svg.chart { max-width: 100%; height: auto; background: #fff; }
svg.chart text { font-size: 11px; fill: #4a5263; font-family: inherit; }
svg.chart text.ct { font-size: 12px; font-weight: 600; fill: var(--ink); }
svg.chart text.tx { text-anchor: middle; } svg.chart text.ty { text-anchor: end; }
svg.chart .grid { stroke: #e8ebf0; stroke-width: 1; } svg.chart .frame { fill: none; stroke: #b9c1cd; }
svg.chart .line { fill: none; stroke-width: 1.7; stroke-linejoin: round; opacity: .9; }
svg.ci line { stroke: #4a5263; stroke-width: 1.4; } svg.ci circle { fill: var(--accent); } svg.ci .zero { stroke: #39414f; stroke-width: 1.2; stroke-dasharray: 3 2; }
.empty-note { padding: 14px 18px; border: 1px dashed #c5ccd8; border-radius: 6px; color: var(--muted); background: var(--soft); }
footer { margin-top: 48px; font-size: .8rem; color: var(--muted); }
@media (max-width: 900px) { .layout { display: block; } nav.toc { position: static; max-height: none; border-right: 0; } main { padding: 8px 16px 40px; } }
@media print { nav.toc { display: none; } .layout { display: block; } }
"""

# Filters the paper list by text, kind and status; the rows carry data-kind, data-status, data-text.
# The page's query string may preset the filters: report.html?q=delta&kind=block&status=missing.
SCRIPT = """
(function () {
  var q = document.getElementById('paper-q'), k = document.getElementById('paper-kind'),
      s = document.getElementById('paper-status'), n = document.getElementById('paper-count');
  if (!q) return;
  var rows = Array.prototype.slice.call(document.querySelectorAll('#paper-list tbody tr'));
  var preset = new URLSearchParams(window.location.search);
  q.value = preset.get('q') || '';
  [[k, 'kind'], [s, 'status']].forEach(function (p) {
    var v = preset.get(p[1]);
    if (v && Array.prototype.some.call(p[0].options, function (o) { return o.value === v; })) p[0].value = v;
  });
  function apply() {
    var text = q.value.trim().toLowerCase(), shown = 0;
    rows.forEach(function (r) {
      var ok = (!k.value || r.dataset.kind === k.value) && (!s.value || r.dataset.status === s.value) &&
               (!text || r.dataset.text.indexOf(text) >= 0);
      r.hidden = !ok; if (ok) shown++;
    });
    n.textContent = shown + ' of ' + rows.length + ' papers';
  }
  [q, k, s].forEach(function (el) { el.addEventListener('input', apply); });
  apply();
})();
"""
