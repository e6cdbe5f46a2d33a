// Calls to the histoseek service: JSON in and out, the token (if any) on every request.
// URLs are relative, so the page also works behind a proxy that serves it under a prefix.

const TOKEN_KEY = "histoseek.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** fetch `path`; `json` or `form` make it a POST. Answers parsed JSON, or the Response for
 * anything else (pictures, XML); a non-2xx answer throws ApiError with the service's message. */
export async function api(path, { json, form, signal } = {}) {
  const init = { method: json || form ? "POST" : "GET", headers: authHeaders(), signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `the service did not answer (${err.message})`);
  }
  const type = response.headers.get("content-type") || "";
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    if (type.includes("json")) {
      try {
        message = (await response.json()).error || message;
      } catch {
        // keep the status line
      }
    }
    throw new ApiError(response.status, message);
  }
  return type.includes("application/json") ? response.json() : response;
}

/** A decoded picture from the service (a thumbnail, a Deep Zoom tile), sent with the token. */
export async function picture(path, signal) {
  const response = await api(path, { signal });
  return createImageBitmap(await response.blob());
}

const dziCache = new Map();

/** The Deep Zoom geometry of a source: width, height, tile size, overlap, top level. */
export function deepZoom(source) {
  if (!dziCache.has(source)) {
    const info = api(`slides/${source}.dzi`)
      .then((response) => response.text())
      .then((xml) => {
        const doc = new DOMParser().parseFromString(xml, "application/xml");
        const image = doc.documentElement;
        const size = doc.getElementsByTagName("Size")[0];
        const width = Number(size.getAttribute("Width"));
        const height = Number(size.getAttribute("Height"));
        return {
          width, height,
          tile: Number(image.getAttribute("TileSize")),
          overlap: Number(image.getAttribute("Overlap")),
          format: image.getAttribute("Format") || "jpeg",
          top: Math.ceil(Math.log2(Math.max(width, height, 1))),
        };
      });
    info.catch(() => dziCache.delete(source));
    dziCache.set(source, info);
  }
  return dziCache.get(source);
}

/** Draw the level-0 box {x, y, w, h} of `source` into `canvas`, about `px` pixels on its
 * longer side, from the Deep Zoom tiles of the nearest level (at most 2x2 tiles). */
export async function drawCrop(canvas, source, box, px = 256) {
  const dz = await deepZoom(source);
  let scale = 1; // level-0 pixels per pixel of the level drawn
  while (Math.max(box.w, box.h) / (scale * 2) >= px && scale < 2 ** dz.top) scale *= 2;
  const level = dz.top - Math.log2(scale);
  const levelW = Math.ceil(dz.width / scale);
  const levelH = Math.ceil(dz.height / scale);
  const x0 = box.x / scale;
  const y0 = box.y / scale;
  const x1 = Math.min(levelW, (box.x + box.w) / scale);
  const y1 = Math.min(levelH, (box.y + box.h) / scale);
  canvas.width = Math.max(1, Math.round(x1 - x0));
  canvas.height = Math.max(1, Math.round(y1 - y0));
  const ctx = canvas.getContext("2d");
  const jobs = [];
  for (let col = Math.floor(x0 / dz.tile); col <= Math.floor((x1 - 1) / dz.tile); col++) {
    for (let row = Math.floor(y0 / dz.tile); row <= Math.floor((y1 - 1) / dz.tile); row++) {
      const left = col * dz.tile - (col > 0 ? dz.overlap : 0);
      const top = row * dz.tile - (row > 0 ? dz.overlap : 0);
      jobs.push(picture(`slides/${source}_files/${level}/${col}_${row}.${dz.format}`)
        .then((tile) => ctx.drawImage(tile, left - x0, top - y0)));
    }
  }
  await Promise.all(jobs);
}
