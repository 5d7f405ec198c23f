// The privacy officers' console: every view reads the read API with the as-of date chosen.
// Text is only ever put in the page as text (textContent), never as HTML.
"use strict";
(() => {
  const state = {
    asOf: "",
    token: sessionStorage.getItem("lineage-read-token") || "",
    cy: null,
    identifier: null, // the last one traced, in memory only: re-traced when the date changes
    selected: null,
  };
  const $ = (selector) => document.querySelector(selector);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function day(iso) { return iso ? iso.slice(0, 10) : "-"; }
  function moment(iso) { return iso ? iso.replace("T", " ").replace(/(\+00:00|Z)$/, " UTC") : "-"; }
  function status(text, error) {
    const line = $("#status");
    line.textContent = text || "";
    line.className = error ? "error" : "";
  }
  function row(cells) {
    const tr = el("tr");
    for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
    return tr;
  }
  function fill(tbody, rows, empty, columns) {
    tbody.replaceChildren();
    if (!rows.length) {
      const td = el("td", empty, "hint");
      td.colSpan = columns;
      tbody.append(row([td]));
    }
    for (const cells of rows) tbody.append(row(cells));
  }

  async function api(path, options) {
    const init = Object.assign({}, options || {});
    init.headers = Object.assign({}, init.headers || {});
    if (state.token) init.headers["Authorization"] = "Bearer " + state.token;
    const response = await fetch(path, init);
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) {
      status("The read API needs the read token: enter it above.", true);
      throw new Error("unauthorized");
    }
    if (!response.ok && response.status !== 404) throw new Error(body.error || response.statusText);
    return { status: response.status, body };
  }
  function withAsOf(path, params) {
    const query = new URLSearchParams(params || {});
    if (state.asOf) query.set("as_of", state.asOf);
    const text = query.toString();
    return text ? `${path}?${text}` : path;
  }

  // -- summary (the report's numbers) -------------------------------------------------------
  async function summary() {
    const { body } = await api(withAsOf("/api/v1/report"));
    const s = body.summary;
    const rows = [
      ["alerts", s.alerts],
      ["distinct people affected", s.affected_subjects],
      ["identifiers affected", s.affected_identifiers],
      ["first violation", moment(s.first_violation)],
      ["last violation", moment(s.last_violation)],
      ["systems on evidence paths", (s.systems || []).join(", ") || "-"],
    ];
    const tbody = $("#summary tbody");
    tbody.replaceChildren();
    for (const [name, value] of rows) {
      const tr = row([el("th", name), el("td", value)]);
      tr.dataset.field = name;
      tbody.append(tr);
    }
    $("#summary-when").textContent = state.asOf ? `as of ${state.asOf}` : "now";
  }

  // -- routes and erasure gaps --------------------------------------------------------------
  async function routes() {
    const { body } = await api(withAsOf("/api/v1/queries/paths"));
    const rows = body.rows.map((r) => [
      `${r.origin_dataset} (${r.origin_purpose})`,
      r.route.map(([dataset, job]) => (job ? `${job} → ${dataset}` : dataset)).join(" → "),
      `${r.use_job} on ${r.use_dataset} for ${r.use_purpose}`,
      r.alerts, r.identifiers, r.people, moment(r.first), moment(r.last),
    ]);
    fill($("#routes tbody"), rows, "No route from a restricted origin to a restricted use.", 8);
  }
  async function gaps() {
    const { body } = await api(withAsOf("/api/v1/queries/erasure-gaps"));
    const rows = body.rows.map((r) => [
      r.display || r.category, moment(r.erased_at), r.dataset,
      `${r.origin_dataset} (${r.origin_purpose})`, moment(r.since), r.source || "-", r.job || "-",
    ]);
    fill($("#gaps tbody"), rows, "No erased identifier is still held downstream.", 7);
  }

  // -- trace ----------------------------------------------------------------------------------
  function traceNode(node) {
    const li = el("li");
    const how = node.job ? ` via ${node.job}` : " (collected)";
    li.append(el("strong", node.dataset), el("span", `${how} since ${moment(node.since)} `),
      el("code", `event ${node.event_id}`));
    const list = el("ul", null, "tree");
    for (const use of node.uses) {
      const item = el("li", `used by ${use.job} for ${use.purpose} on ${moment(use.at)} `);
      item.append(el("code", `event ${use.event_id}`));
      if (use.violates.length) item.append(el("span", ` VIOLATES ${use.violates.join(", ")}`, "violates"));
      list.append(item);
    }
    for (const child of node.children) list.append(traceNode(child));
    if (list.children.length) li.append(list);
    return li;
  }
  async function trace() {
    const target = $("#trace");
    if (state.identifier === null) return;
    const { status: code, body } = await api("/api/v1/trace", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ identifier: state.identifier, as_of: state.asOf || null }),
    });
    target.replaceChildren();
    if (code !== 200) {
      target.append(el("p", body.error || "cannot trace", "violates"));
      return;
    }
    const who = body.identifier;
    const head = el("p");
    head.append(el("strong", who.display || who.category, "masked"),
      el("span", ` (${who.category}, ref `), el("code", who.ref.slice(0, 16) + "…"), el("span", ")"));
    target.append(head);
    if (!body.found) {
      target.append(el("p", `No lineage recorded for it${state.asOf ? " as of " + state.asOf : ""}.`));
      return;
    }
    for (const origin of body.trace.origins) {
      const title = el("p");
      title.append(el("span", "origin "), el("strong", origin.origin.dataset),
        el("span", ` collected for ${origin.origin.purpose}`));
      const tree = el("ul", null, "tree");
      tree.append(traceNode(origin.root));
      target.append(title, tree);
    }
  }

  // -- the graph ------------------------------------------------------------------------------
  function edgeColour(edge, doc) {
    const restricted = edge.origins.find((o) => doc.restrictedOrigins.includes(o));
    const origin = restricted || edge.origins[0];
    return origin ? doc.colours[origin] : "#b0b0b0";
  }
  function legend(doc) {
    const box = $("#legend");
    box.replaceChildren(el("span", "edges by origin purpose:", "hint"));
    for (const origin of doc.origins) {
      const swatch = el("span", null, "swatch");
      swatch.style.background = doc.colours[origin];
      box.append(swatch, el("span", origin + (doc.restrictedOrigins.includes(origin) ? " (restricted)" : "")));
    }
  }
  async function graph() {
    const { body } = await api(withAsOf("/api/v1/lineage"));
    const elements = [];
    for (const node of body.graph) {
      elements.push({ data: { id: node.id, label: node.data.name, kind: node.type.toLowerCase() } });
    }
    for (const node of body.graph) {
      for (const edge of node.outEdges) {
        elements.push({
          data: {
            id: `${edge.origin}->${edge.destination}`, source: edge.origin, target: edge.destination,
            colour: edgeColour(edge, body), violating: edge.violating.length ? "yes" : "no",
          },
        });
      }
    }
    legend(body);
    if (state.cy) state.cy.destroy();
    state.cy = cytoscape({
      container: $("#graph"),
      elements,
      style: [
        { selector: "node", style: { label: "data(label)", "font-size": 10, "text-wrap": "wrap",
          "text-max-width": 140, "text-valign": "center", "text-halign": "center",
          width: "label", height: "label", padding: 8, "border-width": 1 } },
        { selector: 'node[kind = "dataset"]', style: { shape: "round-rectangle",
          "background-color": "#eef3fb", "border-color": "#4a6fa5" } },
        { selector: 'node[kind = "job"]', style: { shape: "ellipse",
          "background-color": "#f2f2f2", "border-color": "#777777" } },
        { selector: 'node[kind = "use"]', style: { shape: "hexagon",
          "background-color": "#fff4e5", "border-color": "#b36b00" } },
        { selector: "edge", style: { width: 2, "line-color": "data(colour)",
          "target-arrow-color": "data(colour)", "target-arrow-shape": "triangle",
          "curve-style": "bezier" } },
        { selector: 'edge[violating = "yes"]', style: { width: 4, "line-style": "dashed" } },
        { selector: ".downstream", style: { "border-width": 3, "border-color": "#d62728" } },
        { selector: "node:selected", style: { "border-width": 4, "border-color": "#111" } },
      ],
      layout: { name: "dagre", rankDir: "LR", nodeSep: 20, rankSep: 60 },
    });
    state.cy.on("tap", "node", (event) => {
      showNode(event.target.id()).catch((error) => status(String(error.message || error), true));
    });
    document.body.dataset.graphNodes = String(body.graph.length);
    if (state.selected && state.cy.getElementById(state.selected).nonempty()) await showNode(state.selected);
    else $("#node-panel").replaceChildren(el("p", "Click a dataset or a job to see what lies downstream and whose data it holds.", "hint"));
  }
  async function showNode(id) {
    state.selected = id;
    const cy = state.cy;
    cy.elements().removeClass("downstream");
    const node = cy.getElementById(id);
    node.successors().nodes().addClass("downstream");
    const panel = $("#node-panel");
    const [kind, ...rest] = id.split(":");
    const name = rest.join(":");
    const heading = el("h3", `${kind} ${name}`);
    if (kind === "use") {
      const by = node.incomers().nodes().map((n) => n.data("label")).join(", ");
      panel.replaceChildren(heading, el("p", `a use for ${name}, by ${by || "-"}`));
      document.body.dataset.selected = id;
      return;
    }
    const { status: code, body } = await api(withAsOf("/api/v1/queries/blast-radius", { target: name }));
    const table = el("table", null, "downstream");
    table.append(row(["kind", "name", "dataset", "purpose", "origin of the data held", "identifiers", "people"].map((h) => el("th", h))));
    const rows = code === 200 ? body.rows : [];
    for (const r of rows) {
      const tr = row([r.kind, r.name, r.dataset, r.purpose || "-", r.origin || "nothing held", r.identifiers, r.people]);
      tr.dataset.kind = r.kind;
      table.append(tr);
    }
    panel.replaceChildren(heading, el("p", "Downstream, and whose data each holds:"), table);
    document.body.dataset.selected = id;
  }

  // -- wiring ---------------------------------------------------------------------------------
  async function refresh() {
    document.body.dataset.ready = "";
    status("loading…");
    try {
      await Promise.all([summary(), routes(), gaps(), graph(), trace()]);
      status("");
      document.body.dataset.ready = state.asOf || "now";
    } catch (error) {
      if (error.message !== "unauthorized") status(String(error.message || error), true);
    }
  }
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#identifier");
    state.identifier = input.value.trim();
    input.value = ""; // the raw value leaves the page: only its masked form is shown
    document.body.dataset.traced = "";
    trace().then(() => { document.body.dataset.traced = state.asOf || "now"; })
      .catch((error) => status(String(error.message || error), true));
  });
  $("#as-of").addEventListener("change", (event) => {
    state.asOf = event.target.value;
    refresh();
  });
  $("#as-of-clear").addEventListener("click", () => {
    $("#as-of").value = "";
    state.asOf = "";
    refresh();
  });
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("#token").value;
    sessionStorage.setItem("lineage-read-token", state.token);
    $("#token").value = "";
    refresh();
  });
  if (typeof cytoscapeDagre !== "undefined") cytoscape.use(cytoscapeDagre);
  window.lineageConsole = { cy: () => state.cy };
  refresh();
})();
