"use strict";
// The explorer page: pick or drop an image, move tau or delta, see the kept regions, the certainty-vs-tau curve,
// the region embeddings and post-hoc explainers' maps. Every text from the server or a file name is shown through
// textContent or an attribute (never parsed as HTML).
(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const state = { info: null, id: null, source: "delta", tau: 0.5, delta: 0.99, busy: false, pending: null,
    started: 0, view: null };

  function status(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  async function request(url, options) {
    const response = await fetch(url, options);
    let body = {};
    try { body = await response.json(); } catch (_) { body = {}; }
    if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
    return body;
  }

  function setting() {
    return state.source === "tau" ? `tau=${state.tau}` : `delta=${state.delta}`;
  }

  // One view request at a time; a slider moved meanwhile sends its latest value when the answer is in.
  function ask(started) {
    if (state.id === null) return;
    const query = setting();
    if (state.busy) { state.pending = started; return; }
    state.busy = true;
    request(`/api/view/${state.id}?${query}`)
      .then((view) => show(view, started))
      .catch((error) => status(`Cannot update: ${error.message}`, true))
      .finally(() => {
        state.busy = false;
        if (state.pending !== null) { const next = state.pending; state.pending = null; ask(next); }
      });
  }

  function show(view, started) {
    state.view = view;
    state.tau = view.tau;
    $("tau").value = String(view.tau);
    $("tau-value").textContent = view.tau.toFixed(2);
    $("prediction").textContent =
      `${view.class} (p = ${view.probability.toFixed(3)}); kept ${view.kept_regions} of ${view.regions} regions, ` +
      `${(100 * view.kept_fraction).toFixed(1)}% of the pixels`;
    const overlay = $("overlay");
    overlay.onload = () => {
      overlay.dataset.tau = String(view.tau);
      overlay.dataset.kept = String(view.kept_regions);
      $("latency").textContent = `mask updated in ${Math.round(performance.now() - started)} ms ` +
        `(server: ${Math.round(1000 * view.seconds)} ms, ` +
        `${view.classified ? "head + classifier" : "head only: the classifier had seen this mask"})`;
    };
    overlay.src = view.overlay;
    drawCurve(view);
    drawEmbedding(view.embedding);
    $("download-figure").href = `/api/figure/${view.id}.png?${setting()}`;
    $("download-explanation").href = `/api/explanation/${view.id}.safetensors?${setting()}`;
  }

  function node(parent, tag, attributes, text) {
    const element = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    if (text !== undefined) element.textContent = text;
    parent.append(element);
    return element;
  }

  function axes(svg, xLabel, yLabel) {
    svg.replaceChildren();
    node(svg, "line", { x1: 30, y1: 180, x2: 310, y2: 180, stroke: "#888" });
    node(svg, "line", { x1: 30, y1: 10, x2: 30, y2: 180, stroke: "#888" });
    node(svg, "text", { x: 240, y: 193, "text-anchor": "middle" }, xLabel);
    node(svg, "text", { x: 2, y: 12 }, yLabel);
  }

  function drawCurve(view) {
    const svg = $("curve");
    axes(svg, "tau", "p");
    const x = (tau) => 30 + 280 * tau;
    const y = (p) => 180 - 170 * p;
    for (const value of [0, 0.5, 1]) {
      node(svg, "text", { x: Math.min(x(value), 302), y: 193, "text-anchor": "middle" }, value.toFixed(1));
    }
    node(svg, "text", { x: 4, y: y(0.5) + 3 }, "0.5");
    if (state.info.tau_mode !== "fixed") {
      node(svg, "line", { x1: 30, x2: 310, y1: y(state.delta), y2: y(state.delta), stroke: "#e08a00",
        "stroke-dasharray": "4 3" });
    }
    node(svg, "line", { x1: x(view.tau), x2: x(view.tau), y1: 10, y2: 180, stroke: "#24323f" });
    const shown = state.info.classes.indexOf(view.class);
    for (const point of view.curve) {
      const dot = node(svg, "circle", { cx: x(point.tau), cy: y(point.probability), r: 3.5, stroke: "#1a5aa6",
        fill: point.class === shown ? "#1a5aa6" : "#fff" });
      const name = state.info.classes[point.class];
      node(dot, "title", {}, `tau ${point.tau}: ${name} p = ${point.probability.toFixed(3)}, ` +
        `kept ${(100 * point.kept_fraction).toFixed(1)}%`);
    }
  }

  function drawEmbedding(points) {
    const svg = $("embedding");
    axes(svg, "PC 1", "PC 2");
    if (points.length === 0) return;
    const xs = points.map((p) => p.x);
    const ys = points.map((p) => p.y);
    const scale = (values, low, high) => {
      const min = Math.min(...values);
      const span = Math.max(...values) - min || 1;
      return (value) => low + (high - low) * (value - min) / span;
    };
    const x = scale(xs, 40, 300);
    const y = scale(ys, 170, 20);
    for (const point of points) {
      const dot = node(svg, "circle", { cx: x(point.x), cy: y(point.y), r: 4,
        fill: point.kept ? "#e08a00" : "#b8b8b8", stroke: "#333", "stroke-width": 0.5 });
      node(dot, "title", {}, `region ${point.region}: selection probability ${point.score.toFixed(2)}` +
        (point.kept ? " (kept)" : ""));
    }
  }

  function select(id) {
    state.id = id;
    state.source = "delta";
    $("picker").value = id;
    $("posthoc").replaceChildren();
    $("explorer").hidden = false;
    status("", false);
    ask(performance.now());
  }

  function addOption(id, name) {
    const option = document.createElement("option");
    option.value = id;
    option.textContent = name;
    $("picker").append(option);
  }

  async function upload(file) {
    status(`Reading ${file.name}…`, false);
    try {
      const added = await request(`/api/images?name=${encodeURIComponent(file.name)}`, {
        method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: file,
      });
      addOption(added.id, added.name);
      select(added.id);
    } catch (error) {
      status(`Not added: ${error.message}`, true);
    }
  }

  async function runPosthoc() {
    if (state.id === null) return;
    const id = state.id;
    $("run-posthoc").disabled = true;
    status("Running the post-hoc explainers…", false);
    try {
      const result = await request(`/api/posthoc/${id}`);
      if (id !== state.id) return;
      const box = $("posthoc");
      box.replaceChildren();
      for (const method of result.methods) {
        const figure = document.createElement("figure");
        const caption = document.createElement("figcaption");
        if (method.error) {
          caption.textContent = `${method.method}: ${method.error}`;
        } else {
          const image = document.createElement("img");
          image.src = method.url;
          image.alt = `${method.method} map`;
          figure.append(image);
          caption.textContent = `${method.method} (class ${method.class}): ${method.evaluations} model ` +
            `evaluations, ${method.seconds.toFixed(2)} s`;
        }
        figure.append(caption);
        box.append(figure);
      }
      status("", false);
    } catch (error) {
      status(`Post-hoc explainers failed: ${error.message}`, true);
    } finally {
      $("run-posthoc").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    try {
      state.info = await request("/api/info");
    } catch (error) {
      status(`Cannot reach the explorer: ${error.message}`, true);
      return;
    }
    const info = state.info;
    $("model").textContent = `${info.title}: ${info.classes.length} classes, ${info.image_size} px`;
    state.delta = info.delta;
    $("delta").value = String(info.delta);
    $("delta-value").textContent = info.delta.toFixed(2);
    $("delta").disabled = info.tau_mode === "fixed";
    for (const image of info.images) addOption(image.id, image.name);
    $("run-posthoc").textContent = `Run ${info.methods.join(", ")}`;
    $("picker").addEventListener("change", () => select($("picker").value));
    $("tau").addEventListener("input", () => {
      state.source = "tau";
      state.tau = Number($("tau").value);
      $("tau-value").textContent = state.tau.toFixed(2);
      ask(performance.now());
    });
    $("delta").addEventListener("input", () => {
      state.source = "delta";
      state.delta = Number($("delta").value);
      $("delta-value").textContent = state.delta.toFixed(2);
      ask(performance.now());
    });
    $("run-posthoc").addEventListener("click", runPosthoc);
    $("file").addEventListener("change", () => { if ($("file").files.length) upload($("file").files[0]); });
    const drop = $("drop");
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      const files = event.dataTransfer ? event.dataTransfer.files : [];
      if (files.length) upload(files[0]); else status("Drop an image file (nothing was dropped).", true);
    });
    if (info.images.length) select(info.images[0].id);
    else status("Drop an image file to start.", false);
  });
})();
