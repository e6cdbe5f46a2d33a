// The histoseek page: text, image and slide queries, the results grid, and the viewer.
import { api, ApiError, drawCrop, getToken, picture, setToken } from "./api.js";
import { openViewer, refreshViewer, setupViewer } from "./viewer.js";

const $ = (selector) => document.querySelector(selector);

/** What the page knows: the library's sources, the last query and its hits (ranked). */
export const state = {
  health: null,
  sources: new Map(), // source id -> GET /sources row
  query: null, // {kind: "text"|"image"|"region"|"slide", ...}
  hits: [], // the query's hits, each with its 1-based .rank
  seconds: 0,
};

let searchTicket = 0;
let renderTicket = 0;

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function formatScore(score) {
  return typeof score === "number" ? score.toFixed(3) : "–";
}

export function hitBox(hit) {
  return hit.x === null || hit.x === undefined ? null
    : { x: hit.x, y: hit.y, w: hit.w || 1, h: hit.h || 1 };
}

export function sourceName(id) {
  const row = state.sources.get(id);
  return row ? row.name : `source ${id}`;
}

/** A short phrase for a query, for status lines and the viewer. */
export function describeQuery(query) {
  if (!query) return "";
  switch (query.kind) {
    case "text": return `text “${query.text}”`;
    case "image": return `image ${query.name}`;
    case "region":
      return `region ${query.w}×${query.h} px at (${query.x}, ${query.y}) of ` +
        `${sourceName(query.source)}`;
    case "slide": return `slide ${sourceName(query.source)}`;
    default: return query.kind;
  }
}

function options() {
  const k = Math.min(200, Math.max(1, Number($("#q-k").value) || 12));
  const find = $("#q-target").value;
  return find === "regions" ? { k, target: "tiles", level: "region" } : { k, target: find };
}

/** Run `query` against the service with `opts` ({k, target, level, where}): its JSON answer. */
export function request(query, opts) {
  const body = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
  switch (query.kind) {
    case "text":
      return api("search/text", { json: { text: query.text, ...body } });
    case "region":
      return api("search/region", { json: { source: query.source, x: query.x, y: query.y,
        w: query.w, h: query.h, ...body } });
    case "slide":
      return api("search/slide", { json: { source: query.source, ...body } });
    case "image": {
      const form = new FormData();
      form.append("file", query.file, query.name);
      for (const [key, value] of Object.entries(body)) {
        form.append(key, typeof value === "object" ? JSON.stringify(value) : String(value));
      }
      return api("search/image", { form });
    }
    default:
      throw new Error(`unknown query ${query.kind}`);
  }
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

export function errorText(err) {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    $("#access").open = true;
    return `${err.message} (enter the service token under “Access token”)`;
  }
  return err.message || String(err);
}

/** Run a query with the page's options; its hits replace the results. */
export async function search(query, opts = {}) {
  const ticket = ++searchTicket;
  const results = $("#results");
  results.setAttribute("aria-busy", "true");
  $("#status").textContent = `Searching for ${describeQuery(query)}…`;
  showError("");
  try {
    const answer = await request(query, { ...options(), ...opts });
    if (ticket !== searchTicket) return null;
    state.query = query;
    state.hits = answer.hits.map((hit, i) => ({ ...hit, rank: i + 1 }));
    state.seconds = answer.seconds;
    const n = state.hits.length;
    $("#status").textContent = `${n} hit${n === 1 ? "" : "s"} for ${describeQuery(query)} ` +
      `in ${answer.seconds.toFixed(2)} s`;
    renderHits();
    refreshViewer();
    if (!$("#viewer").open && results.getBoundingClientRect().top > innerHeight * 0.6) {
      results.scrollIntoView({ block: "start" }); // one column: bring the results up
    }
    return answer;
  } catch (err) {
    if (ticket === searchTicket) {
      $("#status").textContent = `The search for ${describeQuery(query)} failed.`;
      showError(errorText(err));
    }
    throw err;
  } finally {
    if (ticket === searchTicket) results.removeAttribute("aria-busy");
  }
}

function quietly(promise) {
  promise.catch((err) => console.warn(err)); // shown on the page by search()
}

/** The picture of a hit: its box cropped from the slide, or the source's thumbnail with the
 * hit's boxes drawn; nothing for a report. */
async function drawHitPicture(canvas, hit, ticket) {
  const box = hitBox(hit);
  if (box) {
    await drawCrop(canvas, hit.source, box, 224);
    return;
  }
  const bitmap = await picture(`slides/${hit.source}/thumbnail.png?size=256`);
  if (ticket !== renderTicket) return;
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const row = state.sources.get(hit.source);
  if (!row || !row.width) return;
  const scale = bitmap.width / row.width;
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#00e5ff";
  for (const region of hit.regions || []) {
    const r = hitBox(region);
    if (r) ctx.strokeRect(r.x * scale, r.y * scale, Math.max(2, r.w * scale),
      Math.max(2, r.h * scale));
  }
}

function hitFacts(hit) {
  const facts = [];
  const box = hitBox(hit);
  if (box) facts.push(`${box.w}×${box.h} px at (${box.x}, ${box.y})`);
  if (hit.mpp) facts.push(`${hit.mpp} µm/px`);
  if (!box && hit.regions && hit.regions.length) {
    facts.push(`${hit.regions.length} matched tile${hit.regions.length === 1 ? "" : "s"}`);
  }
  return facts.join(" · ");
}

function hitCard(hit, ticket) {
  const openable = hit.source !== null && hit.source !== undefined &&
    (hit.kind !== "report" || state.sources.has(hit.source));
  const title = hit.kind === "report" ? `report ${hit.report_id || hit.id}`
    : hit.slide || sourceName(hit.source);
  const picture = hit.kind === "report"
    ? element("span", { class: "hit-text", text: hit.text || "" })
    : element("canvas", { class: "hit-canvas", width: 1, height: 1, "aria-hidden": "true" });
  const meta = element("span", { class: "hit-meta" },
    element("span", { class: "hit-top" },
      element("span", { class: "rank", text: `#${hit.rank}` }),
      element("span", { class: "kind", text: hit.kind }),
      element("span", { class: "score", title: "similarity", text: formatScore(hit.score) })),
    element("span", { class: "hit-title", text: title }),
    hit.label ? element("span", { class: "label", text: hit.label }) : null,
    element("span", { class: "hit-facts", text: hitFacts(hit) }),
    openable ? element("span", { class: "hit-source",
      text: `source ${hit.source}: ${sourceName(hit.source)}` }) : null);
  const label = `Result ${hit.rank}: ${hit.kind} ${title}, score ${formatScore(hit.score)}` +
    (hit.label ? `, label ${hit.label}` : "") + (openable ? ". Open in the viewer" : "");
  const card = openable
    ? element("button", { type: "button", class: "hit", "aria-label": label,
      dataset: { rank: hit.rank, source: hit.source },
      onclick: () => openViewer(hit.source, hit) }, picture, meta)
    : element("article", { class: "hit hit--static", tabindex: "0", "aria-label": label,
      dataset: { rank: hit.rank } }, picture, meta);
  if (picture.tagName === "CANVAS") {
    const frame = element("span", { class: "hit-pic" }, picture);
    card.prepend(frame);
    drawHitPicture(picture, hit, ticket).then(() => { picture.dataset.drawn = "true"; },
      () => { picture.dataset.drawn = "failed"; frame.classList.add("hit-pic--failed"); });
  } else {
    card.prepend(element("span", { class: "hit-pic hit-pic--text" }, picture));
  }
  return element("li", {}, card);
}

function renderHits() {
  const ticket = ++renderTicket;
  const list = $("#hits");
  list.replaceChildren(...state.hits.map((hit) => hitCard(hit, ticket)));
}

function imageQuery(file) {
  if (!file) return;
  if (!file.type.startsWith("image/") && !/\.(png|jpe?g|tiff?|bmp|webp)$/i.test(file.name)) {
    showError(`${file.name || "that file"} is not an image (PNG, JPEG, TIFF, BMP or WebP)`);
    return;
  }
  const preview = $("#drop-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.alt = `query image ${file.name || "pasted"}`;
  preview.hidden = false;
  quietly(search({ kind: "image", file, name: file.name || "pasted image" }));
}

function setupQueries() {
  $("#text-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#q-text").value.trim();
    if (text) quietly(search({ kind: "text", text }));
  });
  const input = $("#q-image");
  input.addEventListener("change", () => {
    imageQuery(input.files[0]);
    input.value = ""; // the same file again is a new query
  });
  const drop = $("#drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("drop--over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("drop--over"));
  }
  // a file dropped anywhere is a query (and never replaces the page)
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer?.files.length) imageQuery(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData?.items || [])].find(
      (i) => i.kind === "file" && i.type.startsWith("image/"));
    if (!item) return; // text pasted into a field stays text
    event.preventDefault();
    const file = item.getAsFile();
    imageQuery(new File([file], file.name || "pasted.png", { type: file.type }));
  });
  $("#slide-search").addEventListener("click", () => {
    const source = Number($("#q-slide").value);
    if (source) quietly(search({ kind: "slide", source }, { target: "slides" }));
  });
  $("#slide-open").addEventListener("click", () => {
    const source = Number($("#q-slide").value);
    if (source) openViewer(source, null);
  });
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken($("#token").value.trim());
    $("#token").value = "";
    loadLibrary();
  });
  $("#token-forget").addEventListener("click", () => {
    setToken("");
    loadLibrary();
  });
}

async function loadLibrary() {
  showError("");
  const line = $("#library");
  try {
    state.health = await api("health");
    $("#access").open = state.health.private && !getToken();
    if (state.health.private && !getToken()) {
      line.textContent = "This service is private: enter its token under “Access token”.";
      $("#token").focus();
      return;
    }
    const [info, listed] = await Promise.all([api("info"), api("sources")]);
    state.sources = new Map(listed.sources.map((row) => [row.id, row]));
    const count = (n, what) => `${n} ${what}${n === 1 ? "" : "s"}`;
    line.textContent = `${count(info.slides, "slide")} · ${count(info.images, "image")} · ` +
      `${count(info.tiles, "tile")} · ${count(info.reports, "report")} · ` +
      `encoder ${info.encoder.name}` +
      (state.health.private ? " · private" : "");
    const picker = $("#q-slide");
    const slides = listed.sources.filter((row) => row.kind === "slide");
    picker.replaceChildren(...slides.map((row) => element("option", { value: row.id,
      text: `${row.name} (${row.width}×${row.height})` })));
    picker.disabled = slides.length === 0;
    $("#slide-search").disabled = slides.length === 0;
    $("#slide-open").disabled = slides.length === 0;
    if (!slides.length) picker.append(element("option", { text: "no slides indexed" }));
    document.body.dataset.ready = "true";
  } catch (err) {
    line.textContent = state.health ? "The library could not be read." : "No service.";
    showError(errorText(err));
  }
}

setupQueries();
setupViewer({ state, search, request, describeQuery, errorText, hitBox, formatScore,
  sourceName });
loadLibrary();
window.histoseek = { state }; // for the browser tests and the console
