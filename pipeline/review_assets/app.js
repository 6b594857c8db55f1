// mtmc review page: one card per identity, merge / split / undo through the JSON API;
// identities' floor paths (calibrated cameras) in an SVG above the cards.
"use strict";

let data = null;
let similar = null;  // {camera, track_id, matches} while "find similar" results are shown
let floor = null;    // {plan, paths} from api/floor
let floorFocus = null;  // global id whose floor path is highlighted
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function seconds(t) { return t.toFixed(1); }

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, options);
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

async function act(path, body, done) {
  try {
    await api(path, body);
    document.getElementById("status").textContent = done;
  } catch (error) {
    document.getElementById("status").textContent = "error: " + error.message;
  }
  await load();
}

function selected() {
  return [...document.querySelectorAll("input.pick:checked")].map(b => Number(b.value));
}

function updateMerge() {
  const picks = selected();
  const button = document.getElementById("merge");
  button.disabled = picks.length !== 2;
  button.textContent = picks.length === 2
    ? `Merge ${Math.max(...picks)} into ${Math.min(...picks)}` : "Merge selected";
  for (const card of document.querySelectorAll(".card")) {
    card.classList.toggle("selected", picks.includes(Number(card.dataset.id)));
  }
}

function card(identity) {
  const span = Math.max(data.t1 - data.t0, 1e-6);
  const pick = el("input", {type: "checkbox", class: "pick", value: identity.global_id});
  pick.addEventListener("change", updateMerge);
  const node = el("section", {class: "card", "data-id": identity.global_id},
    el("h2", {}, pick, `id ${identity.global_id}`,
      el("span", {class: "meta"}, `${identity.cameras.length} camera(s) · ` +
        `${seconds(identity.first_s)}–${seconds(identity.last_s)} s · ` +
        `${seconds(identity.duration_s)} s`)));
  if (floor && floor.paths.some(p => p.global_id === identity.global_id)) {
    const show = el("button", {class: "floor", title: "this identity's path on the floor",
                               "data-id": identity.global_id}, "floor");
    show.addEventListener("click", () => focusFloor(identity.global_id));
    node.querySelector("h2").append(show);
  }
  const several = identity.tracklets.length > 1;
  for (const camera of identity.cameras) {
    const tracks = identity.tracklets.filter(t => t.camera === camera);
    const crops = el("div", {class: "crops"});
    const line = el("div", {class: "timeline", title: `${camera} timeline`});
    for (const t of tracks) {
      const figure = el("figure", {class: "tracklet", "data-camera": t.camera,
                                   "data-track": t.track_id});
      if (t.crop) {
        figure.append(el("img", {alt: `${t.camera} track ${t.track_id}`, loading: "lazy",
          src: `api/crop?camera=${encodeURIComponent(t.camera)}&track=${t.track_id}`}));
      }
      figure.append(el("figcaption", {}, `t${t.track_id} ${seconds(t.first_s)}–` +
                                         `${seconds(t.last_s)} s `));
      const find = el("button", {class: "similar", title: "tracks that look like this one",
                                 "data-camera": t.camera, "data-track": t.track_id}, "similar");
      find.addEventListener("click", () => findSimilar(t.camera, t.track_id));
      figure.querySelector("figcaption").append(find);
      const match = similar ? similar.score.get(`${t.camera}/${t.track_id}`) : undefined;
      if (match !== undefined) {
        figure.classList.add("match");
        figure.dataset.similarity = match.toFixed(3);
        figure.querySelector("figcaption").append(el("span", {class: "sim"}, ` ${match.toFixed(2)}`));
      }
      if (several) {
        const split = el("button", {class: "split", title: "make this tracklet a new identity",
                                    "data-camera": t.camera, "data-track": t.track_id}, "split");
        split.addEventListener("click", () => act("api/split",
          {camera: t.camera, track_id: t.track_id}, `split ${t.camera}/t${t.track_id} off`));
        figure.querySelector("figcaption").append(split);
      }
      crops.append(figure);
      line.append(el("span", {class: "span", title: `${seconds(t.first_s)}–${seconds(t.last_s)} s`,
        style: `left:${100 * (t.first_s - data.t0) / span}%;` +
               `width:${100 * (t.last_s - t.first_s) / span}%`}));
    }
    node.append(el("div", {class: "cam-row", "data-camera": camera},
                   el("div", {class: "cam-name"}, camera), crops, line));
  }
  return node;
}

async function findSimilar(camera, track) {
  try {
    const answer = await api(`api/similar?camera=${encodeURIComponent(camera)}&track=${track}`);
    similar = {camera, track_id: track, score: new Map(
      answer.matches.map(m => [`${m.camera}/${m.track_id}`, m.similarity]))};
    document.getElementById("status").textContent =
      `${answer.matches.length} tracks most like ${camera}/t${track}, best first`;
    document.getElementById("clear-similar").hidden = false;
  } catch (error) {
    document.getElementById("status").textContent = "error: " + error.message;
  }
  render();
}

function bestMatch(identity) {
  const scores = identity.tracklets.map(t => similar.score.get(`${t.camera}/${t.track_id}`))
    .filter(v => v !== undefined);
  return scores.length ? Math.max(...scores) : undefined;
}

function render() {
  const query = document.getElementById("search").value.trim();
  const order = document.getElementById("sort").value;
  let list = data.identities.filter(i => !query || String(i.global_id) === query);
  if (similar) {
    list = list.filter(i => bestMatch(i) !== undefined)
      .sort((a, b) => bestMatch(b) - bestMatch(a));
    const cards = document.getElementById("cards");
    cards.replaceChildren(...list.map(card));
    document.getElementById("count").textContent = `${list.length} identities`;
    updateMerge();
    return;
  }
  const keys = {
    cameras: (a, b) => b.cameras.length - a.cameras.length || b.duration_s - a.duration_s,
    duration: (a, b) => b.duration_s - a.duration_s || b.cameras.length - a.cameras.length,
  };
  list = [...list].sort((a, b) => (keys[order] ? keys[order](a, b) : 0) ||
                                  a.global_id - b.global_id);
  const cards = document.getElementById("cards");
  cards.replaceChildren(...list.map(card));
  document.getElementById("count").textContent =
    `${list.length} of ${data.identities.length} identities`;
  updateMerge();
}

function renderCorrections() {
  const list = document.getElementById("corrections");
  list.replaceChildren(...data.corrections.slice().reverse().map(c => {
    const text = c.kind === "merge" ? `#${c.id} merged ${c.absorb_id} into ${c.keep_id}`
      : `#${c.id} split ${c.camera}/t${c.track_id} off as ${c.new_id}`;
    const item = el("li", {class: c.undone ? "undone" : "", "data-id": c.id}, text + " ");
    if (!c.undone) {
      const undo = el("button", {class: "undo", "data-id": c.id}, "undo");
      undo.addEventListener("click", () => act("api/undo", {id: c.id}, `undid #${c.id}`));
      item.append(undo);
    }
    return item;
  }));
  document.getElementById("corrections-count").textContent = data.corrections.length;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

// Floor points (metres) -> the drawing's coordinates: plan pixels with a plan, else
// metres with y growing downwards (as plots/floor.png draws it).
function floorXY(x, y) {
  const plan = floor.plan;
  if (!plan) return [x, y];
  const row = plan.y_up ? plan.origin_m[1] - y : y - plan.origin_m[1];
  return [(x - plan.origin_m[0]) * plan.px_per_m, row * plan.px_per_m];
}

function renderFloor() {
  const box = document.getElementById("floor-box");
  const drawing = document.getElementById("floor");
  box.hidden = !floor.paths.length;
  document.getElementById("floor-count").textContent = floor.paths.length;
  if (!floor.paths.length) return;
  const nodes = [];
  let view;
  if (floor.plan) {
    view = [0, 0, floor.plan.width_px, floor.plan.height_px];
    nodes.push(svg("image", {href: "api/floor_plan", x: 0, y: 0, width: view[2],
                             height: view[3]}));
  } else {
    const xs = floor.paths.flatMap(p => p.points.map(q => q[1]));
    const ys = floor.paths.flatMap(p => p.points.map(q => q[2]));
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const pad = Math.max(x1 - x0, y1 - y0, 1) * 0.05;
    view = [x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad];
    for (let g = Math.ceil(view[0]); g <= view[0] + view[2]; g++) {
      nodes.push(svg("line", {class: "grid", x1: g, x2: g, y1: view[1], y2: view[1] + view[3]}));
    }
    for (let g = Math.ceil(view[1]); g <= view[1] + view[3]; g++) {
      nodes.push(svg("line", {class: "grid", y1: g, y2: g, x1: view[0], x2: view[0] + view[2]}));
    }
  }
  drawing.setAttribute("viewBox", view.join(" "));
  for (const path of floor.paths) {
    const line = svg("polyline", {
      "data-id": path.global_id, stroke: path.colour,
      points: path.points.map(q => floorXY(q[1], q[2]).join(",")).join(" ")});
    if (floorFocus !== null) line.classList.add(path.global_id === floorFocus ? "focus" : "dim");
    const title = svg("title", {});
    const first = path.points[0][0], last = path.points[path.points.length - 1][0];
    title.textContent = `id ${path.global_id}: ${seconds(first)}–${seconds(last)} s`;
    line.append(title);
    line.addEventListener("click", () => focusFloor(path.global_id));
    nodes.push(line);
  }
  drawing.replaceChildren(...nodes);
  document.getElementById("floor-all").hidden = floorFocus === null;
}

function focusFloor(globalId) {
  floorFocus = globalId;
  document.getElementById("floor-box").open = true;
  renderFloor();
  if (globalId !== null) {
    document.getElementById("status").textContent = `floor path of id ${globalId}`;
    document.getElementById("floor-box").scrollIntoView({block: "start"});
  }
}

async function load() {
  data = await api("api/run");
  floor = await api("api/floor");
  if (floorFocus !== null && !floor.paths.some(p => p.global_id === floorFocus)) floorFocus = null;
  renderFloor();
  document.getElementById("run").textContent =
    `${data.run} · ${data.cameras.length} cameras · ${data.state}`;
  render();
  renderCorrections();
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

document.getElementById("search").addEventListener("input", render);
document.getElementById("floor-all").addEventListener("click", event => {
  event.preventDefault();
  focusFloor(null);
});
document.getElementById("clear-similar").addEventListener("click", () => {
  similar = null;
  document.getElementById("clear-similar").hidden = true;
  document.getElementById("status").textContent = "";
  render();
});
document.getElementById("sort").addEventListener("change", render);
document.getElementById("merge").addEventListener("click", () => {
  const picks = selected();
  if (picks.length !== 2) return;
  const keep = Math.min(...picks), absorb = Math.max(...picks);
  act("api/merge", {keep, absorb}, `merged ${absorb} into ${keep}`);
});
load().catch(error => {
  document.getElementById("status").textContent = "error: " + error.message;
});
