// rlm-graph trace viewer. Everything model-written is put in the page as text (textContent /
// text nodes), never parsed as HTML. Collapsed content is not built until it is opened, so a
// trace of many thousands of events renders only what is on screen.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("trace-data").textContent);
  var RUNS = new Map();
  D.runs.forEach(function (r) { RUNS.set(r.id, r); });
  var S = { open: new Set(), saved: null, term: "", hits: null };
  if (D.root) S.open.add("r:" + D.root);

  // ---- small DOM helpers -------------------------------------------------------------------
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) fill(e, String(text));
    return e;
  }
  // Append text, wrapping matches of the search term in <mark> (still only text nodes).
  function fill(e, text) {
    var term = S.term;
    if (!term) { e.appendChild(document.createTextNode(text)); return e; }
    var low = text.toLowerCase(), i = 0, j;
    while ((j = low.indexOf(term, i)) !== -1) {
      if (j > i) e.appendChild(document.createTextNode(text.slice(i, j)));
      var m = document.createElement("mark");
      m.textContent = text.slice(j, j + term.length);
      e.appendChild(m);
      i = j + term.length;
    }
    if (i < text.length) e.appendChild(document.createTextNode(text.slice(i)));
    return e;
  }
  function short(text, n) {
    var flat = String(text === null || text === undefined ? "" : text).replace(/\s+/g, " ").trim();
    return flat.length <= n ? flat : flat.slice(0, n - 1) + "…";
  }
  function secs(x) { return x === null || x === undefined ? "–" : Number(x).toFixed(2) + " s"; }
  function badge(text, cls) { return el("span", "badge" + (cls ? " " + cls : ""), text); }
  function kv(dl, key, value) {
    if (value === null || value === undefined || value === "") return;
    dl.appendChild(el("dt", null, key));
    dl.appendChild(el("dd", null, typeof value === "object" ? JSON.stringify(value) : value));
  }
  function field(parent, name, text, cls) {
    var f = el("div", "field");
    f.appendChild(el("div", "name", name));
    var pre = el("pre", cls || null, text);
    f.appendChild(pre);
    parent.appendChild(f);
    return f;
  }

  // ---- Python syntax highlighting (keywords, strings, comments, numbers, known functions) --
  var KW = new Set(("False None True and as assert async await break class continue def del " +
    "elif else except finally for from global if import in is lambda nonlocal not or pass " +
    "raise return try while with yield match case").split(" "));
  var FN = new Set(("print len range str int float list dict set tuple sorted enumerate zip " +
    "map filter sum min max any all open isinstance llm_query llm_query_batched rlm_query " +
    "rlm_query_batched final_answer").split(" "));
  var TOKEN = new RegExp([
    "(#[^\\n]*)",
    "((?:[rRbBuUfF]{1,2})?(?:\"\"\"[\\s\\S]*?(?:\"\"\"|$)|'''[\\s\\S]*?(?:'''|$)|" +
      "\"(?:[^\"\\\\\\n]|\\\\[\\s\\S])*(?:\"|$)|'(?:[^'\\\\\\n]|\\\\[\\s\\S])*(?:'|$)))",
    "(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|(?:\\d[\\d_]*\\.?[\\d_]*|\\.\\d[\\d_]*)" +
      "(?:[eE][+-]?\\d+)?[jJ]?)",
    "([A-Za-z_][A-Za-z0-9_]*)",
  ].join("|"), "y");
  function highlight(pre, src) {
    var i = 0, plain = "";
    function flush() { if (plain) { fill(pre, plain); plain = ""; } }
    function tok(cls, text) { flush(); pre.appendChild(fill(el("span", cls), text)); }
    while (i < src.length) {
      TOKEN.lastIndex = i;
      var m = TOKEN.exec(src);
      if (!m || m[0].length === 0) { plain += src[i]; i += 1; continue; }
      if (m[1]) tok("hl-com", m[1]);
      else if (m[2]) tok("hl-str", m[2]);
      else if (m[3]) tok("hl-num", m[3]);
      else if (KW.has(m[4])) tok("hl-kw", m[4]);
      else if (FN.has(m[4])) tok("hl-fn", m[4]);
      else plain += m[4];
      i += m[0].length;
    }
    flush();
    return pre;
  }

  // ---- search: which runs and iterations match, computed on the data, not the DOM ----------
  function has(text) {
    return text !== null && text !== undefined && String(text).toLowerCase().indexOf(S.term) !== -1;
  }
  function iterHits(it) {
    if (has(it.thought)) return true;
    for (var b of it.blocks) if (has(b.code) || has(b.output) || has(b.error)) return true;
    for (var c of it.subcalls) if (has(c.prompt) || has(c.answer) || has(c.error)) return true;
    return false;
  }
  function searchRun(run, hits) {
    var self = has(run.query) || has(run.answer) || has(run.stopped_reason) || has(run.id);
    var any = self;
    run.iterations.forEach(function (it) {
      var key = "i:" + run.id + ":" + it.n, inside = false;
      it.children.forEach(function (cid) {
        var child = RUNS.get(cid);
        if (child && searchRun(child, hits)) inside = true;
      });
      var own = iterHits(it);
      if (own) hits.iterations += 1;
      if (own || inside) { hits.visible.add(key); hits.open.add(key); any = true; }
    });
    if (self) hits.runs += 1;
    if (any) { hits.visible.add("r:" + run.id); hits.open.add("r:" + run.id); }
    return any;
  }
  function applySearch(raw) {
    var term = raw.trim().toLowerCase();
    if (term === S.term) return;
    if (!S.term && term) S.saved = new Set(S.open);
    S.term = term;
    var info = document.getElementById("search-info");
    if (!term) {
      S.hits = null;
      if (S.saved) S.open = S.saved;
      S.saved = null;
      info.textContent = "";
    } else {
      var hits = { visible: new Set(), open: new Set(), runs: 0, iterations: 0 };
      topRuns().forEach(function (r) { searchRun(r, hits); });
      S.hits = hits;
      S.open = new Set(hits.open);
      info.textContent = hits.iterations + " iteration(s), " + hits.runs + " run(s) match";
    }
    renderTree();
    document.body.dataset.search = term;  // tells tests the search has been applied
  }
  function shown(key) { return !S.hits || S.hits.visible.has(key); }

  // ---- the recursion tree -----------------------------------------------------------------
  function topRuns() {
    var out = [];
    if (D.root && RUNS.has(D.root)) out.push(RUNS.get(D.root));
    D.orphans.forEach(function (id) { if (RUNS.has(id)) out.push(RUNS.get(id)); });
    return out;
  }
  // A collapsible node; its body is built only while it is open.
  function node(kind, key, data, head, build) {
    var n = el("div", "node " + kind);
    n.dataset.key = key;
    Object.keys(data).forEach(function (k) { n.dataset[k] = data[k]; });
    var h = el("div", "head");
    var open = S.open.has(key);
    var t = el("button", "tog", open ? "▾" : "▸");
    t.type = "button";
    t.setAttribute("aria-expanded", open ? "true" : "false");
    h.appendChild(t);
    head(h);
    h.addEventListener("click", function () {
      if (S.open.has(key)) S.open.delete(key); else S.open.add(key);
      n.replaceWith(node(kind, key, data, head, build));
    });
    n.appendChild(h);
    if (open) { var body = el("div", "body"); build(body); n.appendChild(body); }
    return n;
  }

  function runNode(run) {
    return node("run", "r:" + run.id, { runId: run.id }, function (h) {
      h.appendChild(badge("d" + run.depth));
      h.appendChild(el("span", "label", short(run.query, 120) || run.id));
      if (!run.ended) h.appendChild(badge("unfinished", "open"));
      if (run.stopped_reason) h.appendChild(badge(run.stopped_reason, "ok"));
      h.appendChild(badge(run.iterations.length + " it"));
      h.appendChild(badge(run.tokens + " tok"));
      h.appendChild(badge(secs(run.seconds)));
    }, function (body) { runBody(body, run); });
  }
  function runBody(body, run) {
    var dl = el("dl", "kv");
    kv(dl, "run id", run.id);
    kv(dl, "query", run.query);
    kv(dl, "context", (run.context_type || "?") + ", " + run.context_chars + " chars");
    kv(dl, "answer", run.answer);
    kv(dl, "stopped", run.stopped_reason);
    kv(dl, "usage", run.usage);
    kv(dl, "started", "@" + secs(run.t_start));
    body.appendChild(dl);
    run.iterations.forEach(function (it) {
      if (shown("i:" + run.id + ":" + it.n)) body.appendChild(iterNode(run, it));
    });
  }
  function iterNode(run, it) {
    var key = "i:" + run.id + ":" + it.n;
    return node("iter", key, { iter: run.id + ":" + it.n }, function (h) {
      h.appendChild(el("span", null, "#" + it.n));
      h.appendChild(el("span", "label", short(it.thought, 100)));
      var errs = it.blocks.filter(function (b) { return b.error; }).length;
      if (it.blocks.length) h.appendChild(badge(it.blocks.length + " block(s)"));
      if (errs) h.appendChild(badge(errs + " error(s)", "err"));
      if (it.subcalls.length) h.appendChild(badge(it.subcalls.length + " sub-call(s)"));
      if (it.has_final) h.appendChild(badge("final answer", "ok"));
      if (it.dead_end) h.appendChild(badge("dead end: asked again unseen", "err"));
      h.appendChild(badge(it.tokens + " tok"));
      h.appendChild(badge("model " + secs(it.model_seconds)));
    }, function (body) { iterBody(body, it); });
  }
  function iterBody(body, it) {
    if (it.thought) field(body, "thought", it.thought);
    it.blocks.forEach(function (b) { blockView(body, b); });
    it.subcalls.forEach(function (c) { body.appendChild(subcallView(c)); });
    it.children.forEach(function (cid) {
      var child = RUNS.get(cid);
      if (child && shown("r:" + cid)) body.appendChild(runNode(child));
    });
  }
  function blockView(body, b) {
    var f = el("div", "field block");
    f.appendChild(el("div", "name", "code block " + b.index + " · " + secs(b.seconds)));
    f.appendChild(highlight(el("pre", "code"), String(b.code || "")));
    if (b.pending) {
      f.appendChild(el("div", "note", "no output recorded (the block was still running)"));
    } else {
      var out = b.output || !b.error ? field(f, "output", b.output || "(no output)", "output") : f;
      if (b.truncated) {
        out.appendChild(el("div", "note truncated", "output truncated: showing " + b.shown_chars +
          " of " + b.output_chars + " characters"));
      }
      if (b.timed_out) f.appendChild(el("div", "note", "timed out"));
      if (b.restarted) f.appendChild(el("div", "note", "worker restarted: variables were lost"));
      if (b.error) field(f, "error", b.error, "error");
    }
    body.appendChild(f);
  }
  function subcallView(c) {
    var d = el("div", "subcall" + (c.error ? " failed" : ""));
    d.dataset.callId = c.call_id;
    var h = el("div", "name");
    h.appendChild(el("b", null, c.function || (c.kind + "_query")));
    h.appendChild(document.createTextNode(" " + (c.kind === "rlm" ? "child run" : "model call") +
      " · " + (c.done ? secs(c.seconds) : "unfinished") + " · @" + secs(c.t_start)));
    d.appendChild(h);
    var io = el("div", "io");
    field(io, "prompt", c.prompt || "");
    if (c.answer !== undefined && c.answer !== null) field(io, "answer", c.answer);
    d.appendChild(io);
    if (c.error) field(d, "error", c.error, "error");
    return d;
  }
  function renderTree() {
    var tree = document.getElementById("tree");
    tree.textContent = "";
    topRuns().forEach(function (r) { if (shown("r:" + r.id)) tree.appendChild(runNode(r)); });
  }
  function reveal(runId) {
    var id = runId;
    S.open.add("r:" + id);
    while (RUNS.has(id) && RUNS.get(id).parent) {
      var parent = RUNS.get(RUNS.get(id).parent);
      if (!parent) break;
      parent.iterations.forEach(function (it) {
        if (it.children.indexOf(id) !== -1) S.open.add("i:" + parent.id + ":" + it.n);
      });
      S.open.add("r:" + parent.id);
      id = parent.id;
    }
    renderTree();
    var target = document.querySelector('.node.run[data-key="' + CSS.escape("r:" + runId) + '"]');
    if (target) { target.scrollIntoView({ block: "start" }); target.classList.add("flash"); }
  }

  // ---- timeline: one row per run, then rows of concurrent sub-calls; only visible rows built --
  var ROW = 16;
  function tick(span) {
    var steps = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60,
      120, 300, 600, 1200, 1800, 3600];
    for (var s of steps) if (span / s <= 10) return s;
    return span / 10;
  }
  function renderAxis(tEnd) {
    var axis = document.getElementById("tl-axis");
    axis.textContent = "";
    var step = tick(tEnd);
    for (var t = 0; t <= tEnd + 1e-9; t += step) {
      var s = el("span", null, (step < 1 ? t.toFixed(step < 0.01 ? 3 : 2) : t.toFixed(0)) + " s");
      s.style.left = (100 * t / tEnd) + "%";
      axis.appendChild(s);
    }
  }
  function laneRow(lane, i, tEnd) {
    var row = el("div", "tl-row");
    row.style.top = (i * ROW) + "px";
    var run = RUNS.get(lane.run);
    var name = el("div", "tl-name", (lane.sub ? "   ↳ sub-calls" : "d" + lane.depth + " " +
      short(run ? run.query : lane.run, 40)));
    name.style.paddingLeft = (lane.depth * 8) + "px";
    name.title = lane.sub ? "sub-calls of " + lane.run : (run ? run.query : lane.run);
    name.addEventListener("click", function () { reveal(lane.run); });
    row.appendChild(name);
    var track = el("div", "tl-track");
    lane.spans.forEach(function (s) {
      var b = el("div", "bar " + s.kind + (s.open ? " open" : ""));
      b.style.left = (100 * s.t0 / tEnd) + "%";
      b.style.width = (100 * Math.max(s.t1 - s.t0, 0) / tEnd) + "%";
      b.title = s.kind + ": " + short(s.label || "", 80) + "\n@" + s.t0.toFixed(3) + " s → " +
        s.t1.toFixed(3) + " s (" + (s.t1 - s.t0).toFixed(3) + " s)" + (s.open ? ", unfinished" : "");
      b.dataset.kind = s.kind;
      track.appendChild(b);
    });
    row.appendChild(track);
    return row;
  }
  function renderTimeline() {
    var legend = document.getElementById("legend");
    [["run", "run"], ["model", "model call"], ["block", "code block"], ["sub-llm", "llm sub-call"],
      ["sub-rlm", "rlm sub-call"], ["sub-tool", "tool call"],
      ["compaction", "compaction"]].forEach(function (k) {
      var s = el("span");
      s.appendChild(el("i", k[0]));
      s.appendChild(document.createTextNode(k[1]));
      legend.appendChild(s);
    });
    var tEnd = Math.max(D.t_end, 1e-3);
    renderAxis(tEnd);
    var scroll = document.getElementById("tl-scroll"), inner = document.getElementById("tl-inner");
    inner.style.height = (D.lanes.length * ROW) + "px";
    var drawn = null;
    function draw() {
      var first = Math.max(0, Math.floor(scroll.scrollTop / ROW) - 10);
      var last = Math.min(D.lanes.length, first + Math.ceil(scroll.clientHeight / ROW) + 20);
      if (drawn && drawn[0] === first && drawn[1] === last) return;
      drawn = [first, last];
      inner.textContent = "";
      for (var i = first; i < last; i++) inner.appendChild(laneRow(D.lanes[i], i, tEnd));
    }
    scroll.addEventListener("scroll", draw, { passive: true });
    draw();
  }

  // ---- summary, totals, settings -----------------------------------------------------------
  function renderSummary() {
    var m = D.meta || {}, banners = document.getElementById("banners");
    if (!D.complete) {
      var b = el("section", "banner", "This trace has no end record: the run crashed or was " +
        "interrupted. Showing the " + D.n_events + " events that were written" +
        (D.cut ? " (the last line was cut off and skipped)." : "."));
      b.id = "incomplete";
      banners.appendChild(b);
    }
    if (D.error) {
      var e = el("section", "banner error", "The run failed: " + D.error);
      e.id = "run-error";
      banners.appendChild(e);
    }
    var s = document.getElementById("summary-kv");
    kv(s, "query", m.query || (D.root && RUNS.get(D.root) ? RUNS.get(D.root).query : ""));
    kv(s, "answer", D.answer);
    kv(s, "stopped", D.stopped_reason);
    kv(s, "model", m.model);
    kv(s, "sub-model", m.sub_model);
    kv(s, "context", m.context_chars !== undefined && m.context_chars !== null ?
      m.context_chars + " chars" : null);
    var t = document.getElementById("totals-kv"), T = D.totals, u = T.usage || {};
    kv(t, "runs", T.runs);
    kv(t, "iterations", T.iterations);
    kv(t, "code blocks", T.blocks + (T.block_errors ? " (" + T.block_errors + " with errors)" : ""));
    kv(t, "sub-calls", T.subcalls + (T.subcall_errors ? " (" + T.subcall_errors + " failed)" : ""));
    kv(t, "tokens", (u.total_tokens || 0) + (u.input_tokens !== undefined ? " (" + u.input_tokens +
      " in, " + u.output_tokens + " out)" : ""));
    kv(t, "model calls", u.llm_calls);
    kv(t, "time", secs(m.seconds !== undefined ? m.seconds : T.seconds));
    kv(t, "events", D.n_events);
    var st = document.getElementById("settings-kv"), settings = m.settings || {};
    Object.keys(settings).forEach(function (k) { kv(st, k, settings[k]); });
    if (!Object.keys(settings).length) document.getElementById("settings").classList.add("hidden");
    if (m.query) document.title = "rlm-graph: " + short(m.query, 60);
  }

  function expandAll() {
    D.runs.forEach(function (r) {
      S.open.add("r:" + r.id);
      r.iterations.forEach(function (it) { S.open.add("i:" + r.id + ":" + it.n); });
    });
    renderTree();
  }
  var timer = null;
  document.getElementById("search").addEventListener("input", function (ev) {
    var value = ev.target.value;
    clearTimeout(timer);
    timer = setTimeout(function () { applySearch(value); }, 120);
  });
  document.getElementById("expand-all").addEventListener("click", expandAll);
  document.getElementById("collapse-all").addEventListener("click", function () {
    S.open = new Set();
    renderTree();
  });
  renderSummary();
  renderTimeline();
  renderTree();
  // Milliseconds from navigation start until the page is built and laid out (reading
  // offsetHeight forces the layout now), read by tests and benchmarks.
  void document.body.offsetHeight;
  document.body.dataset.readyMs = String(Math.round(performance.now()));
  document.body.dataset.ready = "1";
})();
