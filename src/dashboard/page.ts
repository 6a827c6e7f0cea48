// The dashboard's one page: self-contained HTML with inline CSS and script (no framework, nothing fetched
// from elsewhere), which follows /api/events and draws the mesh in SVG — a column per node with its nsmgrs,
// clients, forwarders and endpoints, and each connection as a line through its path's data-plane hops, coloured
// by state. Every drawn element is a <g> with a stable data-testid (node-, nsmgr-, client-, forwarder-,
// endpoint-, connection-<name or id>) and a data-state. Clicking a connection opens its details in the side
// panel. The script only ever sets text and attributes (never HTML), so names from the registry cannot inject
// markup. The server pins the script and style by hash in its Content-Security-Policy.

export const pageStyle = `
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
  background: #f4f6fa; height: 100vh; display: flex; flex-direction: column; }
header { display: flex; align-items: center; gap: 18px; padding: 10px 18px; background: #1d2a44; color: #fff; }
header h1 { font-size: 16px; margin: 0; font-weight: 600; }
#status { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #34466b; }
#status.live { background: #2e7d4f; }
#status.lost { background: #a33b3b; }
.legend { display: flex; gap: 14px; font-size: 12px; margin-left: auto; align-items: center; }
.legend i { display: inline-block; width: 22px; height: 0; border-top: 3px solid; vertical-align: middle;
  margin-right: 4px; }
.legend .up { border-color: #2e9d58; } .legend .healing { border-color: #e69a1c; }
.legend .down { border-color: #d64545; } .legend .vxlan { border-top-style: dashed; border-color: #ccd; }
.legend .tf-vn { border-top-style: dotted; border-color: #ccd; }
main { flex: 1; display: flex; min-height: 0; }
#canvas { flex: 1; overflow: auto; padding: 14px; }
#panel { width: 380px; overflow: auto; background: #fff; border-left: 1px solid #d8dde8; padding: 14px 16px; }
#panel h2 { font-size: 15px; margin: 0 0 8px; word-break: break-all; }
#panel h3 { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: #5b6478; margin: 14px 0 6px; }
#panel table { border-collapse: collapse; width: 100%; font-size: 12px; }
#panel td, #panel th { text-align: left; padding: 3px 4px; border-bottom: 1px solid #eef0f5; vertical-align: top;
  word-break: break-all; }
#panel .muted { color: #7a8396; }
#panel a { color: #2656c9; word-break: break-all; }
#panel button.close { float: right; border: 0; background: none; font-size: 18px; cursor: pointer; color: #7a8396; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 9px; color: #fff; font-size: 12px; font-weight: 600; }
.badge.up { background: #2e9d58; } .badge.healing { background: #e69a1c; } .badge.down { background: #d64545; }
.badge.unreachable { background: #d64545; } .badge.connecting { background: #8a93a6; }
.badge.unwatched { background: #8a93a6; }
.leg { padding: 6px 0; border-bottom: 1px solid #eef0f5; }
.leg-ends { font-weight: 600; margin-bottom: 2px; }
.badge.kind { background: #5b6478; font-weight: 500; }
.seg-name { font-weight: 600; }
.item { padding: 5px 0; border-bottom: 1px solid #eef0f5; word-break: break-all; }
.item-title { font-weight: 600; }
#panel th { white-space: nowrap; }
#panel details { margin-top: 8px; font-size: 12px; }
#panel summary { cursor: pointer; color: #5b6478; }
.row { cursor: pointer; } .row:hover { background: #f1f4fb; }
svg text { font-size: 11px; fill: #1d2330; pointer-events: none; }
svg .node-box { fill: #fff; stroke: #c5ccdb; stroke-width: 1.2; }
svg .node-title { font-size: 13px; font-weight: 600; fill: #34405a; }
svg .kind { font-size: 9px; fill: #6b7487; text-transform: uppercase; letter-spacing: .05em; }
svg .el rect { stroke-width: 1.5; }
svg .nsmgr rect { fill: #e8ecfb; stroke: #5b6fd6; }
svg .forwarder rect { fill: #f1eafb; stroke: #8a5bd6; }
svg .endpoint rect { fill: #e4f5f7; stroke: #1e9bb0; }
svg .client rect { fill: #f2f3f5; stroke: #7d8597; }
svg .nsmgr[data-state=unreachable] rect, svg .nsmgr[data-state=connecting] rect { stroke: #d64545; stroke-dasharray: 4 3; }
svg .conn { cursor: pointer; }
svg .conn .line { fill: none; stroke-width: 3; }
svg .conn .hit { fill: none; stroke: transparent; stroke-width: 14; }
svg .conn[data-state=up] .line { stroke: #2e9d58; }
svg .conn[data-state=healing] .line { stroke: #e69a1c; }
svg .conn[data-state=down] .line { stroke: #d64545; }
svg .conn .line.vxlan { stroke-dasharray: 9 5; }
svg .conn .line.tf-vn { stroke-dasharray: 2 4; stroke-linecap: round; }
svg .conn.selected .line { stroke-width: 5; }
svg .conn-label { font-size: 10px; font-weight: 600; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
svg .empty { font-size: 14px; fill: #7a8396; }
`;

export const pageScript = `
"use strict";
var SVG_NS = "http://www.w3.org/2000/svg";
var svg = document.getElementById("mesh");
var panel = document.getElementById("panel");
var statusEl = document.getElementById("status");
var graph = null;
var selected = null;

var BOX_W = 168, BOX_H = 40, GAP = 14, PAD = 16, TITLE_H = 30, ROW_GAP = 38, NODE_GAP = 48;
var ROWS = [["nsmgrs", "nsmgr"], ["clients", "client"], ["forwarders", "forwarder"], ["endpoints", "endpoint"]];

function svgEl(tag, attrs, parent) {
  var e = document.createElementNS(SVG_NS, tag);
  for (var k in attrs) e.setAttribute(k, String(attrs[k]));
  if (parent) parent.appendChild(e);
  return e;
}
function htmlEl(tag, attrs, text, parent) {
  var e = document.createElement(tag);
  for (var k in attrs) e.setAttribute(k, String(attrs[k]));
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (parent) parent.appendChild(e);
  return e;
}
function svgText(x, y, text, cls, parent) {
  var t = svgEl("text", { x: x, y: y }, parent);
  if (cls) t.setAttribute("class", cls);
  t.textContent = text;
  return t;
}
function clip(s, n) { return s.length > n ? s.slice(0, n - 1) + "\\u2026" : s; }

function layout(g) {
  var pos = {};
  var x = 0;
  var rowsH = ROWS.length * BOX_H + (ROWS.length - 1) * ROW_GAP;
  var nodeH = TITLE_H + PAD + rowsH + PAD;
  var boxes = [];
  g.nodes.forEach(function (n) {
    var cols = 1;
    ROWS.forEach(function (r) { cols = Math.max(cols, n[r[0]].length); });
    var w = PAD * 2 + cols * BOX_W + (cols - 1) * GAP;
    boxes.push({ node: n, x: x, y: 0, w: w, h: nodeH });
    ROWS.forEach(function (r, ri) {
      var items = n[r[0]];
      var rowW = items.length * BOX_W + Math.max(0, items.length - 1) * GAP;
      var x0 = x + (w - rowW) / 2;
      items.forEach(function (name, i) {
        pos[r[1] + ":" + name] = { x: x0 + i * (BOX_W + GAP), y: TITLE_H + PAD + ri * (BOX_H + ROW_GAP), w: BOX_W, h: BOX_H };
      });
    });
    x += w + NODE_GAP;
  });
  return { pos: pos, boxes: boxes, width: Math.max(x - NODE_GAP, 300), height: nodeH };
}

function drawElement(kind, name, p, state, tip, parent) {
  var g = svgEl("g", { "data-testid": kind + "-" + name, "data-kind": kind, "data-state": state, class: "el " + kind }, parent);
  svgEl("title", {}, g).textContent = tip;
  svgEl("rect", { x: p.x, y: p.y, width: p.w, height: p.h, rx: 6 }, g);
  svgText(p.x + 8, p.y + 14, kind, "kind", g);
  svgText(p.x + 8, p.y + 30, clip(name, 24), "", g);
  return g;
}

function byName(list) { var m = {}; list.forEach(function (x) { m[x.name] = x; }); return m; }

/**
 * A piece of a connection's line from box a to box b, edge to edge: down from a's bottom to b's top, up from
 * a's top to b's bottom, or — in one row, forwarder to forwarder across nodes — an arc over both tops.
 */
function piece(a, b, off) {
  var ax = a.x + a.w / 2 + off, bx = b.x + b.w / 2 + off;
  if (Math.abs(b.y - a.y) < 10) {
    var lift = 26 + Math.abs(off);
    return "M" + ax + " " + a.y + " C" + ax + " " + (a.y - lift) + " " + bx + " " + (b.y - lift) + " " + bx + " " + b.y;
  }
  var ay = b.y > a.y ? a.y + a.h : a.y, by = b.y > a.y ? b.y : b.y + b.h;
  var my = (ay + by) / 2;
  return "M" + ax + " " + ay + " C" + ax + " " + my + " " + bx + " " + my + " " + bx + " " + by;
}

function drawConnection(c, i, pos, parent, labelled) {
  var stops = c.path.filter(function (s) { return s.role !== "nsmgr" && pos[s.role + ":" + s.name]; });
  var g = svgEl("g", {
    "data-testid": "connection-" + c.id, "data-state": c.state, "data-mechanism": c.mechanism,
    class: "conn" + (selected === c.id ? " selected" : ""),
  }, parent);
  svgEl("title", {}, g).textContent = c.id + " (" + c.service + "): " + c.state + ", " + c.reason;
  var off = ((i % 5) - 2) * 8;
  var pieces = [];
  for (var k = 0; k + 1 < stops.length; k++) {
    var a = stops[k], b = stops[k + 1];
    var leg = c.legs.find(function (l) { return l.from === a.name && l.to === b.name; });
    pieces.push({ d: piece(pos[a.role + ":" + a.name], pos[b.role + ":" + b.name], off), kind: leg ? leg.kind : "" });
  }
  pieces.forEach(function (p) { svgEl("path", { d: p.d, class: "hit" }, g); });
  pieces.forEach(function (p) { svgEl("path", { d: p.d, class: "line " + p.kind }, g); });
  if (stops.length > 1) {
    // Beside its last piece, towards its endpoint: where connections through one client part ways.
    var pa = pos[stops[stops.length - 2].role + ":" + stops[stops.length - 2].name];
    var pb = pos[stops[stops.length - 1].role + ":" + stops[stops.length - 1].name];
    var ly = Math.abs(pb.y - pa.y) < 10 ? pa.y - 30 : (Math.min(pa.y, pb.y) + pa.h + Math.max(pa.y, pb.y)) / 2 + 4;
    var text = c.mechanism || c.state;
    var pieceKey = stops[stops.length - 2].name + ">" + stops[stops.length - 1].name;
    // One label per piece and text (connections that end alike share it); different texts stack.
    if (!labelled[pieceKey + ":" + text]) {
      var below = labelled[pieceKey] || 0;
      svgText((pa.x + pb.x + pa.w) / 2 + off + 6, ly + below * 12, text, "conn-label", g);
      labelled[pieceKey] = below + 1;
      labelled[pieceKey + ":" + text] = true;
    }
  }
  g.addEventListener("click", function (ev) { ev.stopPropagation(); select(c.id); });
}

function render() {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  var g = graph;
  if (!g || g.nodes.length === 0) {
    svg.setAttribute("width", "520"); svg.setAttribute("height", "80");
    svgText(10, 40, g ? "Nothing registered yet: waiting for the registries and nsmgrs." : "Connecting\\u2026", "empty", svg);
    renderPanel();
    return;
  }
  var L = layout(g);
  // Wide meshes shrink to the canvas (down to 60%), narrower ones keep their size; beyond that, it scrolls.
  var room = document.getElementById("canvas").clientWidth - 30;
  var scale = Math.min(1, Math.max(0.6, room / (L.width + 20)));
  svg.setAttribute("width", String(Math.round((L.width + 20) * scale)));
  svg.setAttribute("height", String(Math.round((L.height + 20) * scale)));
  svg.setAttribute("viewBox", "-10 -10 " + (L.width + 20) + " " + (L.height + 20));
  var nsmgrs = byName(g.nsmgrs), fwds = byName(g.forwarders), eps = byName(g.endpoints);
  var nodesLayer = svgEl("g", { class: "nodes" }, svg);
  L.boxes.forEach(function (b) {
    var n = b.node;
    var ng = svgEl("g", { "data-testid": "node-" + n.name, "data-kind": "node", class: "node" }, nodesLayer);
    svgEl("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 10, class: "node-box" }, ng);
    svgText(b.x + 12, b.y + 20, "node " + n.name, "node-title", ng);
    n.nsmgrs.forEach(function (name) {
      var m = nsmgrs[name];
      drawElement("nsmgr", name, L.pos["nsmgr:" + name], m.status, name + " (" + (m.url || m.publicUrl || "") + "): " + m.status + (m.error ? ", " + m.error : "") + ", " + m.connections + " connections", ng);
    });
    n.clients.forEach(function (name) { drawElement("client", name, L.pos["client:" + name], "up", "client " + name, ng); });
    n.forwarders.forEach(function (name) {
      var f = fwds[name];
      var labels = Object.keys(f.labels).map(function (k) { return k + "=" + f.labels[k]; }).join(", ");
      drawElement("forwarder", name, L.pos["forwarder:" + name], "registered", name + " [" + labels + "] " + f.url, ng);
    });
    n.endpoints.forEach(function (name) {
      var e = eps[name];
      drawElement("endpoint", name, L.pos["endpoint:" + name], "registered", name + ": " + e.services.join(", ") + " " + e.url, ng);
    });
  });
  var connLayer = svgEl("g", { class: "connections" }, svg);
  var labelled = {};
  g.connections.forEach(function (c, i) { drawConnection(c, i, L.pos, connLayer, labelled); });
  renderPanel();
}

function select(id) { selected = id; render(); }

function section(title, parent) { return htmlEl("h3", {}, title, parent); }

function kv(table, key, value, testid) {
  var tr = htmlEl("tr", {}, null, table);
  htmlEl("th", {}, key, tr);
  var td = htmlEl("td", testid ? { "data-testid": testid } : {}, value, tr);
  return td;
}

function renderPanel() {
  while (panel.firstChild) panel.removeChild(panel.firstChild);
  var g = graph;
  var c = g && selected ? g.connections.find(function (x) { return x.id === selected; }) : null;
  if (c) return renderConnection(c);
  htmlEl("h2", {}, "Mesh", panel);
  if (!g) { htmlEl("p", { class: "muted" }, "Waiting for the first update\\u2026", panel); return; }
  if (selected) htmlEl("p", { class: "muted", "data-testid": "panel-gone" }, "Connection " + selected + " is gone.", panel);
  section("Connections (" + g.connections.length + ")", panel);
  var t = htmlEl("table", { "data-testid": "connection-list" }, null, panel);
  if (g.connections.length === 0) htmlEl("p", { class: "muted" }, "No connections.", panel);
  g.connections.forEach(function (x) {
    var tr = htmlEl("tr", { class: "row", "data-testid": "conn-row-" + x.id }, null, t);
    var td = htmlEl("td", {}, null, tr);
    htmlEl("span", { class: "badge " + x.state }, x.state, td);
    htmlEl("td", {}, x.client + " \\u2192 " + x.service, tr);
    htmlEl("td", {}, x.mechanism, tr);
    tr.addEventListener("click", function () { select(x.id); });
  });
  section("Registries", panel);
  g.registries.forEach(function (r) { item(r.status, r.url, [], r.error, "registry-status"); });
  section("nsmgrs", panel);
  g.nsmgrs.forEach(function (m) {
    item(m.status, m.name, [m.url || m.publicUrl || "", "node " + m.node + " \\u00b7 " + m.connections + " connections"], m.error, "nsmgr-status-" + m.name);
  });
}

/** A status line of the mesh summary: badge and title, then muted details. */
function item(status, title, lines, error, testid) {
  var d = htmlEl("div", { class: "item", "data-testid": testid }, null, panel);
  htmlEl("span", { class: "badge " + status }, status, d);
  htmlEl("span", { class: "item-title" }, " " + title, d);
  lines.concat(error ? [error] : []).forEach(function (l) { if (l) htmlEl("div", { class: "muted" }, l, d); });
}

function list(a) { return a.length > 0 ? a.join(", ") : "\\u2014"; }

function renderConnection(c) {
  var close = htmlEl("button", { class: "close", title: "close", "data-testid": "panel-close" }, "\\u00d7", panel);
  close.addEventListener("click", function () { select(null); });
  htmlEl("h2", { "data-testid": "panel-title" }, c.id, panel);
  var head = htmlEl("p", {}, null, panel);
  htmlEl("span", { class: "badge " + c.state, "data-testid": "panel-state" }, c.state, head);
  htmlEl("span", { class: "muted", "data-testid": "panel-reason" }, " " + c.reason, head);
  var t = htmlEl("table", {}, null, panel);
  kv(t, "service", c.service, "panel-service");
  kv(t, "client", c.client + " (node " + c.node + ")");
  kv(t, "endpoint", c.endpoint);
  kv(t, "mechanism", c.mechanism, "panel-mechanism");
  kv(t, "addresses", list(c.addresses.src) + " \\u2192 " + list(c.addresses.dst), "panel-addresses");
  if (c.tf) {
    kv(t, "TF VN", c.tf["tf.vn-name"] || c.tf["tf.vn-uuid"] || "", "panel-tf-vn");
    if (c.tf["tf.floating-ip"]) kv(t, "floating IP", c.tf["tf.floating-ip"]);
    var gw = [c.tf["tf.gateway"], c.tf["tf.gateway6"]].filter(function (x) { return x; });
    if (gw.length > 0) kv(t, "gateway", gw.join(", "));
  }
  var tr = htmlEl("tr", {}, null, t);
  htmlEl("th", {}, "trace", tr);
  var td = htmlEl("td", {}, null, tr);
  if (c.traceUrl) htmlEl("a", { href: c.traceUrl, target: "_blank", rel: "noopener noreferrer", "data-testid": "trace-link" }, "latest traces in Jaeger", td);
  else htmlEl("span", { class: "muted", "data-testid": "trace-link-missing" }, "start the dashboard with --trace-ui-url", td);

  if (c.tf) {
    var det = htmlEl("details", {}, null, panel);
    htmlEl("summary", {}, "TF context (" + Object.keys(c.tf).length + " keys)", det);
    var tt = htmlEl("table", {}, null, det);
    Object.keys(c.tf).sort().forEach(function (k) { kv(tt, k.replace(/^tf\\./, ""), c.tf[k]); });
  }

  section("Legs", panel);
  var legs = htmlEl("div", { "data-testid": "panel-legs" }, null, panel);
  if (c.legs.length === 0) htmlEl("p", { class: "muted" }, "No nsmgr on the path reports it.", legs);
  c.legs.forEach(function (l, i) {
    var d = htmlEl("div", { class: "leg", "data-testid": "leg-" + i, "data-kind": l.kind }, null, legs);
    htmlEl("div", { class: "leg-ends" }, l.from + " \\u2192 " + l.to, d);
    htmlEl("span", { class: "badge kind " + l.kind }, l.kind, d);
    htmlEl("span", {}, " " + l.detail, d);
    htmlEl("div", { class: "muted" }, l.cls + "/" + l.type + " \\u00b7 set up via " + l.nsmgr, d);
  });

  section("Path", panel);
  var pt = htmlEl("table", { "data-testid": "panel-path" }, null, panel);
  c.path.forEach(function (s) {
    var row = htmlEl("tr", { "data-testid": "segment-" + s.index, "data-role": s.role }, null, pt);
    htmlEl("td", {}, s.index, row);
    var nameTd = htmlEl("td", {}, null, row);
    htmlEl("div", { class: "seg-name" }, s.name, nameTd);
    htmlEl("div", { class: "muted" }, s.role + " \\u00b7 id " + s.id, nameTd);
    if (s.url) htmlEl("div", { class: "muted" }, s.url, nameTd);
  });

  section("As the nsmgrs see it", panel);
  var vt = htmlEl("table", { "data-testid": "panel-views" }, null, panel);
  c.views.forEach(function (v) {
    var row = htmlEl("tr", {}, null, vt);
    htmlEl("td", {}, v.nsmgr, row);
    htmlEl("td", {}, v.state + (v.stale ? " (stale)" : "") + (v.onPath ? "" : " (off path)"), row);
    htmlEl("td", { class: "muted" }, v.id, row);
  });
}

function setStatus(text, cls) { statusEl.textContent = text; statusEl.className = cls; }

function onGraph(g) {
  graph = g;
  var counts = { up: 0, healing: 0, down: 0 };
  g.connections.forEach(function (c) { counts[c.state]++; });
  setStatus("live \\u00b7 " + g.connections.length + " connections (" + counts.up + " up, " + counts.healing + " healing, " + counts.down + " down)", "live");
  statusEl.setAttribute("data-version", String(g.version));
  render();
}

svg.addEventListener("click", function () { if (selected) select(null); });
var source = new EventSource("api/events");
source.addEventListener("graph", function (ev) { onGraph(JSON.parse(ev.data)); });
source.addEventListener("error", function () { setStatus("disconnected: retrying\\u2026", "lost"); });
render();
`;

/** The page; the style and script are the exported strings, verbatim (the CSP hashes them). */
export function pageHtml(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>NSM dashboard</title>
<link rel="icon" href="data:,">
<style>${pageStyle}</style>
</head>
<body>
<header>
<h1>Network Service Mesh</h1>
<span id="status" data-testid="status">connecting…</span>
<span class="legend"><span><i class="up"></i>up</span><span><i class="healing"></i>healing</span><span><i class="down"></i>down</span><span><i class="vxlan"></i>vxlan</span><span><i class="tf-vn"></i>TF VN</span></span>
</header>
<main>
<div id="canvas"><svg id="mesh" data-testid="mesh" xmlns="http://www.w3.org/2000/svg" width="520" height="80"></svg></div>
<aside id="panel" data-testid="panel"></aside>
</main>
<script>${pageScript}</script>
</body>
</html>
`;
}
