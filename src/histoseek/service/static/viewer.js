// The slide viewer: OpenSeadragon over /slides/{id}.dzi, the hits' boxes as overlays, a
// heatmap layer, region drawing (a region search) and zero-shot classification.
/* global OpenSeadragon */
import { api, authHeaders } from "./api.js";

const $ = (selector) => document.querySelector(selector);

let ctx = null; // what app.js shares: state, search, request, helpers
let osd = null; // the OpenSeadragon viewer, made on first open
let current = null; // {source, hit}: the slide shown and the hit it was opened for
let openTicket = 0;
let heatTicket = 0;
const groups = new Map(); // overlay group name -> its elements

// "inferno"-like stops: low similarity dark, high bright
const HEAT = [[0, [0, 0, 4]], [0.25, [87, 16, 110]], [0.5, [188, 55, 84]],
  [0.75, [249, 142, 9]], [1, [252, 255, 164]]];

function heatColour(t) {
  const v = Math.min(1, Math.max(0, t));
  for (let i = 1; i < HEAT.length; i++) {
    const [t1, c1] = HEAT[i];
    const [t0, c0] = HEAT[i - 1];
    if (v <= t1) {
      const f = (v - t0) / (t1 - t0);
      return `rgb(${c0.map((c, j) => Math.round(c + f * (c1[j] - c))).join(",")})`;
    }
  }
  return "rgb(252,255,164)";
}

function status(text) {
  $("#v-status").textContent = text;
}

function item() {
  return osd && osd.world.getItemCount() ? osd.world.getItemAt(0) : null;
}

/** The slide's level-0 size, from its Deep Zoom descriptor. */
function dimensions() {
  const shown = item();
  return shown ? { w: shown.source.dimensions.x, h: shown.source.dimensions.y } : null;
}

/** A level-0 box {x, y, w, h} in viewport coordinates. */
function toViewport(box) {
  return item().imageToViewportRectangle(box.x, box.y, box.w, box.h);
}

/** Replace the overlays of group `name` with `entries` ({element, box}). */
function setGroup(name, entries) {
  for (const element of groups.get(name) || []) osd.removeOverlay(element);
  groups.set(name, []);
  if (!item()) return;
  for (const { element, box } of entries) {
    osd.addOverlay({ element, location: toViewport(box) });
    groups.get(name).push(element);
  }
}

function boxElement(classes, data, tag) {
  const div = document.createElement("div");
  div.className = classes.filter(Boolean).join(" ");
  Object.assign(div.dataset, data);
  if (tag) {
    const span = document.createElement("span");
    span.className = "hs-tag";
    span.textContent = tag;
    div.append(span);
  }
  return div;
}

/** The boxes a hit marks on its slide: its own, or those of its matched tiles. */
function boxesOf(hit) {
  const own = ctx.hitBox(hit);
  return own ? [own] : (hit.regions || []).map(ctx.hitBox).filter(Boolean);
}

function matchBox() {
  const query = ctx.state.query;
  const boxes = current && current.hit ? boxesOf(current.hit) : [];
  if (!boxes.length && current && query && query.kind === "region" &&
      query.source === current.source) {
    return query; // after a region search: the region drawn
  }
  if (!boxes.length) return null;
  const x = Math.min(...boxes.map((b) => b.x));
  const y = Math.min(...boxes.map((b) => b.y));
  return { x, y, w: Math.max(...boxes.map((b) => b.x + b.w)) - x,
    h: Math.max(...boxes.map((b) => b.y + b.h)) - y };
}

/** Every hit of the current results that lies on this slide, and the region query's box. */
function drawBoxes() {
  if (!current || !item()) return;
  const entries = [];
  for (const hit of ctx.state.hits) {
    if (hit.source !== current.source) continue;
    const mine = current.hit === hit;
    boxesOf(hit).forEach((box, i) => entries.push({ box, element: boxElement(
      ["hs-box", mine && "hs-box--current"],
      { hitRank: hit.rank, part: i }, i === 0 ? `${hit.rank}` : "") }));
  }
  const query = ctx.state.query;
  if (query && query.kind === "region" && query.source === current.source) {
    entries.push({ box: query, element: boxElement(["hs-query"], {}, "query") });
  }
  setGroup("boxes", entries);
  $("#v-match").disabled = !matchBox();
}

function goToMatch(immediately) {
  if (!item()) return;
  const box = matchBox();
  if (!box) {
    osd.viewport.goHome(immediately);
    return;
  }
  const pad = Math.max(box.w, box.h); // the match, with its surroundings
  osd.viewport.fitBounds(toViewport({ x: box.x - pad, y: box.y - pad, w: box.w + 2 * pad,
    h: box.h + 2 * pad }), immediately);
}

function renderSideHits() {
  const list = $("#v-hits");
  const hits = ctx.state.hits;
  const here = hits.filter((hit) => current && hit.source === current.source).length;
  $("#v-query").textContent = ctx.state.query
    ? `${hits.length} for ${ctx.describeQuery(ctx.state.query)}; ${here} on this slide ` +
      "(boxed, numbered by rank)."
    : "No search yet: draw a region, or search from the page.";
  list.replaceChildren(...hits.slice(0, 100).map((hit) => {
    const li = document.createElement("li");
    const text = `#${hit.rank} ${ctx.formatScore(hit.score)} ${hit.kind} ` +
      `${hit.kind === "report" ? hit.report_id || hit.id : hit.slide || ""}` +
      (hit.label ? ` (${hit.label})` : "");
    if (hit.source === null || hit.source === undefined) {
      li.textContent = text;
      return li;
    }
    const button = document.createElement("button");
    button.type = "button";
    button.className = "side-hit";
    if (current && hit.source === current.source) button.classList.add("side-hit--here");
    if (current && hit === current.hit) button.setAttribute("aria-current", "true");
    button.textContent = text;
    button.addEventListener("click", () => openViewer(hit.source, hit));
    li.append(button);
    return li;
  }));
}

function ensureViewer() {
  if (osd) return osd;
  osd = OpenSeadragon({
    element: $("#osd"),
    prefixUrl: "static/vendor/openseadragon/images/",
    showNavigationControl: false, // the page's own buttons, reachable by keyboard
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    navigatorSizeRatio: 0.16,
    navigatorAutoFade: false,
    drawer: "canvas",
    loadTilesWithAjax: true, // so a private service's tiles can carry the token header
    animationTime: 0.5,
    visibilityRatio: 0.3,
    maxZoomPixelRatio: 4,
    gestureSettingsMouse: { clickToZoom: false },
  });
  osd.addHandler("open", () => groups.clear()); // opening clears every overlay
  window.histoseek.viewer = osd;
  return osd;
}

/** Show `source` in the viewer, at `hit`'s match when given. */
export function openViewer(source, hit = null) {
  const dialog = $("#viewer");
  const ticket = ++openTicket;
  const sameSlide = current && current.source === source && dialog.open && item();
  current = { source, hit };
  $("#viewer-title").textContent = ctx.sourceName(source) + (hit ? ` · result ${hit.rank}` : "");
  if (!dialog.open) dialog.showModal();
  setDrawing(false);
  renderSideHits();
  const viewer = ensureViewer();
  if (sameSlide) {
    drawBoxes();
    goToMatch(false);
    dialog.dataset.state = "ready";
    return;
  }
  dialog.dataset.state = "loading";
  clearHeat();
  $("#v-classes").hidden = true;
  status(`Opening ${ctx.sourceName(source)}…`);
  viewer.setAjaxHeaders(authHeaders(), true); // the token, for the navigator's tiles too
  viewer.addOnceHandler("open", () => {
    if (ticket !== openTicket) return;
    drawBoxes();
    goToMatch(true);
    const dims = dimensions();
    status(`${ctx.sourceName(source)}: ${dims.w}×${dims.h} px.` +
      (hit ? ` Result ${hit.rank}, score ${ctx.formatScore(hit.score)}.` : ""));
    dialog.dataset.state = "ready";
  });
  viewer.addOnceHandler("open-failed", (event) => {
    if (ticket !== openTicket) return;
    status(`Cannot open ${ctx.sourceName(source)}: ${event.message}`);
    dialog.dataset.state = "failed";
  });
  viewer.open(`slides/${source}.dzi`);
}

/** The results changed: redraw the boxes and the list, and the heatmap if it is shown. */
export function refreshViewer() {
  if (!current || !$("#viewer").open) return;
  if (current.hit && !ctx.state.hits.includes(current.hit)) current.hit = null;
  drawBoxes();
  renderSideHits();
  if (heatShown()) loadHeat();
}

function heatShown() {
  return $("#v-heat").getAttribute("aria-pressed") === "true";
}

function clearHeat() {
  heatTicket++;
  $("#v-heat").setAttribute("aria-pressed", "false");
  $("#v-legend").hidden = true;
  if (osd) setGroup("heat", []);
}

function heatCanvas(hits, dims) {
  const canvas = document.createElement("canvas");
  const scale = Math.max(dims.w, dims.h) / 1024; // level-0 px per canvas px
  canvas.width = Math.max(1, Math.ceil(dims.w / scale));
  canvas.height = Math.max(1, Math.ceil(dims.h / scale));
  canvas.className = "hs-heat";
  canvas.style.opacity = String(Number($("#v-heat-opacity").value) / 100);
  const scores = hits.map((hit) => hit.score);
  const low = scores.length ? Math.min(...scores) : 0;
  const high = scores.length ? Math.max(...scores) : 0;
  const span = high - low || 1;
  const g = canvas.getContext("2d");
  for (const hit of [...hits].reverse()) { // best last, so it is on top
    const box = ctx.hitBox(hit);
    if (!box) continue;
    g.fillStyle = heatColour((hit.score - low) / span);
    const x = Math.floor(box.x / scale); // whole pixels: no seams between tiles
    const y = Math.floor(box.y / scale);
    g.fillRect(x, y, Math.max(1, Math.ceil((box.x + box.w) / scale) - x),
      Math.max(1, Math.ceil((box.y + box.h) / scale) - y));
  }
  return { canvas, low, high };
}

/** Score every tile of this slide against the current query, and colour them. */
async function loadHeat() {
  const ticket = ++heatTicket;
  const query = ctx.state.query;
  const row = ctx.state.sources.get(current.source);
  if (!query || !row) {
    status("Run a search first: the heatmap colours this slide's tiles by their similarity " +
      "to the last query.");
    clearHeat();
    return;
  }
  $("#v-heat").setAttribute("aria-pressed", "true");
  status(`Scoring this slide's tiles against ${ctx.describeQuery(query)}…`);
  try {
    const answer = await ctx.request(query, { k: Math.min(1000, Math.max(1, row.n_tiles || 1)),
      target: "tiles", where: { path: row.path } });
    if (ticket !== heatTicket || !current || !item()) return;
    const hits = answer.hits.filter((hit) => hit.source === current.source);
    const { canvas, low, high } = heatCanvas(hits, dimensions());
    setGroup("heat", [{ element: canvas, box: { x: 0, y: 0, ...dimensions() } }]);
    const legend = $("#v-legend");
    legend.textContent = `${low.toFixed(2)} – ${high.toFixed(2)}`;
    legend.title = "similarity: dark low, bright high";
    legend.hidden = false;
    status(`Heatmap: ${hits.length} tiles coloured by similarity to ` +
      `${ctx.describeQuery(query)} (dark low, bright high).`);
  } catch (err) {
    if (ticket !== heatTicket) return;
    clearHeat();
    status(`No heatmap: ${ctx.errorText(err)}`);
  }
}

function isDrawing() {
  return $("#v-draw").getAttribute("aria-pressed") === "true";
}

function setDrawing(on) {
  $("#v-draw").setAttribute("aria-pressed", String(on));
  $("#draw-layer").hidden = !on;
  $("#draw-layer .rubber").hidden = true;
  if (osd) osd.setMouseNavEnabled(!on);
  if (on) status("Drag a rectangle on the slide to search with it (Escape cancels).");
}

function clampBox(a, b) {
  const dims = dimensions();
  const x0 = Math.max(0, Math.min(a.x, b.x));
  const y0 = Math.max(0, Math.min(a.y, b.y));
  const x1 = Math.min(dims.w, Math.max(a.x, b.x));
  const y1 = Math.min(dims.h, Math.max(a.y, b.y));
  return { x: Math.round(x0), y: Math.round(y0), w: Math.round(x1 - x0),
    h: Math.round(y1 - y0) };
}

function setupDrawLayer() {
  const layer = $("#draw-layer");
  const rubber = layer.querySelector(".rubber");
  let start = null;
  const local = (event) => {
    const rect = layer.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
  };
  const place = (a, b) => {
    Object.assign(rubber.style, { left: `${Math.min(a.x, b.x)}px`,
      top: `${Math.min(a.y, b.y)}px`, width: `${Math.abs(a.x - b.x)}px`,
      height: `${Math.abs(a.y - b.y)}px` });
  };
  layer.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    start = local(event);
    layer.setPointerCapture(event.pointerId);
    place(start, start);
    rubber.hidden = false;
  });
  layer.addEventListener("pointermove", (event) => {
    if (start) place(start, local(event));
  });
  const finish = (event) => {
    if (!start) return;
    const end = local(event);
    const first = start;
    start = null;
    rubber.hidden = true;
    if (Math.abs(end.x - first.x) < 6 || Math.abs(end.y - first.y) < 6) {
      status("That rectangle is too small: drag a larger one, or press Escape.");
      return;
    }
    const toImage = (p) => osd.viewport.viewerElementToImageCoordinates(
      new OpenSeadragon.Point(p.x, p.y));
    const box = clampBox(toImage(first), toImage(end));
    setDrawing(false);
    regionSearch(box);
  };
  layer.addEventListener("pointerup", finish);
  layer.addEventListener("pointercancel", () => {
    start = null;
    rubber.hidden = true;
  });
}

/** The part of the slide on screen, in level-0 pixels (the keyboard's region query). */
function visibleBox() {
  const seen = item().viewportToImageRectangle(osd.viewport.getBounds(true));
  return clampBox({ x: seen.x, y: seen.y }, { x: seen.x + seen.width, y: seen.y + seen.height });
}

async function regionSearch(box) {
  if (!current || !item()) return;
  if (box.w < 1 || box.h < 1) {
    status("The region is outside the slide.");
    return;
  }
  const query = { kind: "region", source: current.source, ...box };
  status(`Searching with the region ${box.w}×${box.h} px at (${box.x}, ${box.y})…`);
  try {
    const answer = await ctx.search(query);
    if (answer) {
      status(`${answer.count} hits for the region; those on this slide are boxed, all are ` +
        "listed beside.");
    }
  } catch (err) {
    status(`The region search failed: ${ctx.errorText(err)}`);
  }
}

async function classify() {
  if (!current) return;
  const source = current.source;
  const button = $("#v-classify");
  button.disabled = true;
  status("Classifying every tile of the slide (zero-shot)…");
  try {
    const result = await api("classify", { json: { source } });
    if (!current || current.source !== source) return;
    showClasses(result);
    status(result.abstained ? "Classified: the classifier abstains (see beside)."
      : `Classified: ${result.predicted}.`);
  } catch (err) {
    status(`Classification failed: ${ctx.errorText(err)}`);
  } finally {
    button.disabled = false;
  }
}

function showClasses(result) {
  const section = $("#v-classes");
  const pct = (p) => `${(100 * p).toFixed(1)} %`;
  $("#v-verdict").textContent = result.abstained
    ? `Abstains: the top two classes are ${result.margin.toFixed(2)} apart, less than the ` +
      `margin ${result.min_margin} it needs (best guess: ${result.top_class}). ` +
      `${result.n_tiles} tiles.`
    : `Predicted: ${result.predicted} (margin ${result.margin.toFixed(2)}, ` +
      `${result.n_tiles} tiles).`;
  const rows = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]);
  $("#v-probs").replaceChildren(...rows.map(([name, p]) => {
    const li = document.createElement("li");
    li.className = name === result.top_class ? "prob prob--top" : "prob";
    const label = document.createElement("span");
    label.className = "prob-name";
    label.textContent = name.replaceAll("_", " ");
    const bar = document.createElement("span");
    bar.className = "prob-bar";
    bar.setAttribute("aria-hidden", "true");
    bar.style.setProperty("--p", String(p));
    const value = document.createElement("span");
    value.className = "prob-value";
    value.textContent = pct(p);
    li.append(label, bar, value);
    return li;
  }));
  section.hidden = false;
  setGroup("drivers", (result.driving_tiles || []).map((tile) => ({
    box: tile, element: boxElement(["hs-driver"], { score: tile.score }, "") })));
}

function zoomBy(factor) {
  if (!item()) return;
  osd.viewport.zoomBy(factor);
  osd.viewport.applyConstraints();
}

export function setupViewer(context) {
  ctx = context;
  const dialog = $("#viewer");
  $("#viewer-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("cancel", (event) => {
    if (isDrawing()) { // Escape first stops drawing, then closes
      event.preventDefault();
      setDrawing(false);
      status("Drawing cancelled.");
    }
  });
  dialog.addEventListener("close", () => {
    openTicket++;
    setDrawing(false);
    clearHeat();
    if (osd) osd.close();
    current = null;
    dialog.dataset.state = "closed";
  });
  $("#v-zoom-in").addEventListener("click", () => zoomBy(1.6));
  $("#v-zoom-out").addEventListener("click", () => zoomBy(1 / 1.6));
  $("#v-home").addEventListener("click", () => item() && osd.viewport.goHome());
  $("#v-match").addEventListener("click", () => goToMatch(false));
  $("#v-heat").addEventListener("click", () => (heatShown() ? clearHeat() : loadHeat()));
  $("#v-heat-opacity").addEventListener("input", (event) => {
    for (const canvas of groups.get("heat") || []) {
      canvas.style.opacity = String(Number(event.target.value) / 100);
    }
  });
  $("#v-draw").addEventListener("click", () => item() && setDrawing(!isDrawing()));
  $("#v-view-search").addEventListener("click", () => item() && regionSearch(visibleBox()));
  $("#v-classify").addEventListener("click", classify);
  setupDrawLayer();
}
