"use strict";
// The page of `hamner serve`: sends the form to POST /v1/tag and shows the answer.
// No external requests: everything it needs is in this file, index.html and style.css.
(function () {
  const form = document.getElementById("tag-form");
  const text = document.getElementById("text");
  const image = document.getElementById("image");
  const caption = document.getElementById("caption");
  const previewBox = document.getElementById("preview-box");
  const preview = document.getElementById("preview");
  const statusEl = document.getElementById("status");
  const result = document.getElementById("result");
  const output = document.getElementById("output");
  let previewUrl = null;
  let resultUrl = null;
  let latest = 0;  // only the answer to the latest Tag press is shown

  function setPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = file ? URL.createObjectURL(file) : null;
    preview.src = previewUrl || "";
    previewBox.classList.toggle("hidden", !file);
  }
  image.addEventListener("change", () => setPreview(image.files[0] || null));
  document.getElementById("clear-image").addEventListener("click", () => {
    image.value = "";
    setPreview(null);
    image.focus();
  });
  text.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); }
  });

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children || []) node.append(c);
    return node;
  }

  // Entity colours for any label set. The benchmarks' four types keep their colours whatever a
  // model's order; every other type takes the next colour of a fixed palette, in the model's order
  // (GET /v1/model), then generated hues (the golden angle apart) once the palette is used up. The
  // text colour is whichever of dark ink and white contrasts more with the background. Type names
  // are data: they reach the page only as text nodes and attribute values, never as HTML or as a class.
  const NAMED = { PER: "#fde68a", LOC: "#bbf7d0", ORG: "#bfdbfe", MISC: "#fbcfe8" };
  const DESCRIBED = { PER: "person", LOC: "location", ORG: "organisation", MISC: "other" };
  const PALETTE = ["#fed7aa", "#99f6e4", "#ddd6fe", "#d9f99d", "#fecaca", "#a5f3fc", "#f5d0fe", "#e7e5e4"];
  const INK = [31, 41, 55];  // --ink, #1f2937
  const colours = new Map();  // type -> {bg, ink, index}
  let modelTypes = [];  // the served checkpoint's entity types, in its label order
  let used = 0;  // palette colours and generated hues handed out so far

  function hslToRgb(h, s, l) {
    const k = (n) => (n + h / 30) % 12;
    const a = s * Math.min(l, 1 - l);
    const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1));
    return [f(0), f(8), f(4)].map((v) => Math.round(v * 255));
  }
  function hexToRgb(hex) { return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)); }
  function luminance(rgb) {  // WCAG relative luminance
    const [r, g, b] = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }
  function inkFor(rgb) {
    const l = luminance(rgb);
    const dark = (l + 0.05) / (luminance(INK) + 0.05);
    return dark >= 1.05 / (l + 0.05) ? "rgb(" + INK.join(",") + ")" : "#fff";
  }
  function colourOf(type) {
    let c = colours.get(type);
    if (c) return c;
    let rgb;
    if (Object.hasOwn(NAMED, type)) rgb = hexToRgb(NAMED[type]);
    else {
      const k = used++;
      rgb = k < PALETTE.length ? hexToRgb(PALETTE[k])
        : hslToRgb(((k - PALETTE.length) * 137.508 + 20) % 360, 0.7, (k - PALETTE.length) % 2 ? 0.72 : 0.82);
    }
    c = { bg: "rgb(" + rgb.join(",") + ")", ink: inkFor(rgb), index: colours.size };
    colours.set(type, c);
    return c;
  }
  function paint(node, type) {
    const c = colourOf(type);
    node.dataset.type = type;
    node.dataset.typeIndex = String(c.index);
    node.style.setProperty("--ent-bg", c.bg);
    node.style.setProperty("--ent-ink", c.ink);
    return node;
  }
  function chip(type, children) { return paint(el("span", { class: "ent" }, children || [type]), type); }

  function showLegend(extra) {
    // the model's types, then any type an answer holds that the model did not list (never expected)
    const types = [...modelTypes, ...(extra || []).filter((t) => !modelTypes.includes(t))];
    const legend = document.getElementById("legend");
    legend.replaceChildren(...[...new Set(types)].map((t) =>
      el("li", {}, Object.hasOwn(DESCRIBED, t) ? [chip(t), " " + DESCRIBED[t]] : [chip(t)])));
  }

  fetch("/v1/model").then((res) => (res.ok ? res.json() : null)).then((info) => {
    if (!info || !Array.isArray(info.entity_types)) return;
    modelTypes = info.entity_types.filter((t) => typeof t === "string");
    modelTypes.forEach(colourOf);  // colours follow the model's order, whatever the first answer holds
    showLegend();
  }).catch(() => {});  // the legend is then built from the answers

  function showTweet(data) {
    const tweet = document.getElementById("tweet");
    tweet.replaceChildren();
    // The API's offsets count Unicode code points (Python); JavaScript strings index UTF-16 units,
    // so slice an array of code points (an emoji before an entity would shift it otherwise).
    const chars = Array.from(data.text);
    const cut = (a, b) => chars.slice(a, b).join("");
    let pos = 0;
    for (const e of data.entities) {
      tweet.append(cut(pos, e.start));
      tweet.append(paint(el("mark", { class: "ent", title: e.type }, [cut(e.start, e.end), el("sub", {}, [e.type])]), e.type));
      pos = e.end;
    }
    tweet.append(cut(pos));
    const list = document.getElementById("entity-list");
    list.replaceChildren(...data.entities.map((e) => el("li", {}, [chip(e.type), " " + e.text])));
    showLegend(data.entities.map((e) => e.type));
    if (!data.entities.length) list.replaceChildren(el("li", {}, ["no entities found"]));
    const rel = document.getElementById("relevance");
    rel.textContent = data.relevance === null
      ? "Image relevance: not measured (" + (data.image ? (data.image.used_for_tagging ? "not part of this model" : "text-only model") : "no picture") + ")"
      : "Image relevance r = " + data.relevance.toFixed(2);
    // a multimodal model's weights of its visual levels, set as plain text (textContent)
    const lw = document.getElementById("level-weights");
    const weights = data.level_weights ? Object.entries(data.level_weights) : [];
    lw.textContent = weights.length
      ? "levels: " + weights.map(([level, w]) => level + " " + Number(w).toFixed(2)).join(" · ")
      : "";
    lw.classList.toggle("hidden", !weights.length);
  }

  function showImage(data, file) {
    const box = document.getElementById("image-result");
    const wrap = document.getElementById("boxes-wrap");
    const img = document.getElementById("result-image");
    wrap.querySelectorAll(".box").forEach((b) => b.remove());
    if (resultUrl) { URL.revokeObjectURL(resultUrl); resultUrl = null; }
    if (!data.image || !file) { box.classList.add("hidden"); return; }
    resultUrl = URL.createObjectURL(file);  // the picture that was sent, even if another is chosen meanwhile
    img.src = resultUrl;
    for (const o of data.objects) {
      const [x1, y1, x2, y2] = o.box;
      const b = el("div", { class: "box", "data-label": o.label }, [el("span", {}, [o.label + " " + o.score.toFixed(2)])]);
      b.style.left = (x1 * 100) + "%"; b.style.top = (y1 * 100) + "%";
      b.style.width = ((x2 - x1) * 100) + "%"; b.style.height = ((y2 - y1) * 100) + "%";
      if (y1 < 0.08) b.classList.add("label-inside");  // no room above the box: put its label inside
      wrap.append(b);
    }
    const counts = new Map();
    for (const o of data.objects) counts.set(o.label, (counts.get(o.label) || 0) + 1);
    const names = [...counts].map(([label, n]) => (n > 1 ? n + " × " : "") + label);
    document.getElementById("objects-text").textContent = names.length
      ? "Detected: " + names.join(", ") + "." : "No objects detected.";
    box.classList.remove("hidden");
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!text.value.trim()) { statusEl.textContent = "Type a tweet first."; statusEl.className = "error"; text.focus(); return; }
    const body = new FormData();
    body.append("text", text.value);
    if (caption.value.trim()) body.append("caption", caption.value);
    const file = image.files[0] || null;
    if (file) body.append("image", file, file.name);
    const mine = ++latest;
    statusEl.textContent = "Tagging…"; statusEl.className = "";
    result.setAttribute("aria-busy", "true");
    try {
      const res = await fetch("/v1/tag", { method: "POST", body });
      const data = await res.json();
      if (mine !== latest) return;  // a newer Tag press owns the result area
      if (!res.ok) throw new Error(data.error ? data.error.message : "HTTP " + res.status);
      showTweet(data);
      showImage(data, file);
      document.getElementById("notes").textContent = data.notes.join(" ");
      output.classList.remove("hidden");
      statusEl.textContent = data.entities.length + " entit" + (data.entities.length === 1 ? "y" : "ies") + " in " + Math.round(data.timings_ms.total) + " ms";
    } catch (err) {
      if (mine !== latest) return;
      output.classList.add("hidden");  // do not leave an older answer under the error
      statusEl.textContent = "Error: " + err.message; statusEl.className = "error";
    } finally {
      if (mine === latest) result.setAttribute("aria-busy", "false");
    }
  });
})();
