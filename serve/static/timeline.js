// The mood timeline of a job drawn as SVG: a strip of keyframe thumbnails, the mood segments, valence and
// arousal curves with the shot cuts, the music sections, a time axis and a playhead. Pure drawing: it
// takes the timeline JSON the service returns (the schema of `backscore analyze --json`) and a list of
// thumbnails ({t, url}); no network, no framework.

const SVG = "http://www.w3.org/2000/svg";

export const EMOTION_COLOURS = {
  exciting: "#f0a04b", happy: "#f5d547", tense: "#d9534f", fearful: "#9b59b6", angry: "#c0392b",
  sad: "#4a78c2", relaxing: "#4cb89a", neutral: "#8a8f99", calm: "#4cb89a",
};

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function fmtTime(s) {
  const m = Math.floor(s / 60);
  const r = s - 60 * m;
  return m ? `${m}:${r.toFixed(0).padStart(2, "0")}` : `${r.toFixed(r < 10 ? 1 : 0)} s`;
}

function tickStep(duration, width) {
  const target = duration / Math.max(2, Math.floor(width / 80));
  for (const step of [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300]) if (step >= target) return step;
  return 600;
}

/** Draw `timeline` into the container element `host` (replacing what it held); returns a handle with
 *  `setPlayhead(t)`. `onSeek(t)` is called when the user clicks or presses a key on the timeline. */
export function drawTimeline(host, timeline, thumbnails = [], onSeek = null) {
  host.replaceChildren();
  const duration = Math.max(0.1, Number(timeline.duration_s) || 0.1);
  const width = Math.max(280, host.clientWidth || 640);
  const pad = { left: 34, right: 8 };
  const rows = { thumbs: 0, thumbsH: thumbnails.length ? 42 : 0 };
  rows.moods = rows.thumbsH + 4;
  rows.moodsH = 22;
  rows.curves = rows.moods + rows.moodsH + 6;
  rows.curvesH = 110;
  rows.music = rows.curves + rows.curvesH + 6;
  rows.musicH = 20;
  rows.axis = rows.music + rows.musicH + 4;
  const height = rows.axis + 18;
  const x = (t) => pad.left + (Math.min(Math.max(t, 0), duration) / duration) * (width - pad.left - pad.right);
  const y = (v) => rows.curves + (1 - (Math.min(Math.max(v, -1), 1) + 1) / 2) * rows.curvesH;

  const segments = timeline.segments || [];
  const label = segments.map((s) => `${s.emotion} from ${fmtTime(s.start_s)} to ${fmtTime(s.end_s)}`).join(", ");
  const svg = el("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, class: "timeline-svg", role: "img",
    "aria-label": `Mood timeline, ${fmtTime(duration)}: ${label || "no mood segments"}`,
  }, host);

  // keyframe thumbnails along the time axis
  if (thumbnails.length) {
    const g = el("g", { class: "thumbs" }, svg);
    const w = Math.max(24, Math.min(74, (width - pad.left - pad.right) / thumbnails.length));
    for (const th of thumbnails) {
      const left = Math.min(Math.max(x(th.t) - w / 2, pad.left), width - pad.right - w);
      const img = el("image", { href: th.url, x: left, y: rows.thumbs, width: w, height: rows.thumbsH,
                                preserveAspectRatio: "xMidYMid slice", "data-t": th.t }, g);
      el("title", {}, img).textContent = `keyframe at ${fmtTime(th.t)}`;
    }
  }

  // mood segments
  const gm = el("g", { class: "moods" }, svg);
  for (const s of segments) {
    const x0 = x(s.start_s), x1 = x(s.end_s);
    const seg = el("g", { class: "mood-segment", "data-emotion": s.emotion, "data-start": s.start_s,
                          "data-end": s.end_s }, gm);
    el("rect", { x: x0, y: rows.moods, width: Math.max(1, x1 - x0 - 1), height: rows.moodsH, rx: 3,
                 fill: EMOTION_COLOURS[s.emotion] || "#8a8f99" }, seg);
    if (x1 - x0 > 44) {
      const t = el("text", { x: x0 + 5, y: rows.moods + 15, class: "seg-label" }, seg);
      t.textContent = s.emotion;
    }
    el("title", {}, seg).textContent = `${s.emotion}: ${fmtTime(s.start_s)} - ${fmtTime(s.end_s)}`;
  }

  // curves: zero line, cuts, valence and arousal at each window's centre
  const gc = el("g", { class: "curves" }, svg);
  el("rect", { x: pad.left, y: rows.curves, width: width - pad.left - pad.right, height: rows.curvesH,
               class: "plot-bg" }, gc);
  el("line", { x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0), class: "zero" }, gc);
  for (const [v, txt] of [[1, "+1"], [0, "0"], [-1, "-1"]]) {
    el("text", { x: pad.left - 4, y: y(v) + 4, class: "axis-label", "text-anchor": "end" }, gc).textContent = txt;
  }
  const cuts = (timeline.cuts || []).map((c) => (typeof c === "number" ? { time_s: c } : c));
  const cutTimes = cuts.length ? cuts : (timeline.cuts_s || []).map((t) => ({ time_s: t }));
  for (const c of cutTimes) {
    el("line", { x1: x(c.time_s), x2: x(c.time_s), y1: rows.curves, y2: rows.curves + rows.curvesH,
                 class: c.on_beat ? "cut on-beat" : "cut", "data-t": c.time_s }, gc);
  }
  const windows = timeline.windows || [];
  for (const [key, cls] of [["valence", "valence"], ["arousal", "arousal"]]) {
    const pts = windows.map((w) => `${x((w.start_s + w.end_s) / 2).toFixed(1)},${y(w[key]).toFixed(1)}`);
    if (pts.length) el("polyline", { points: pts.join(" "), class: `curve ${cls}` }, gc);
  }
  const legend = el("g", { class: "legend" }, gc);
  el("text", { x: width - pad.right - 4, y: rows.curves + 12, "text-anchor": "end", class: "valence-label" },
     legend).textContent = "valence";
  el("text", { x: width - pad.right - 4, y: rows.curves + 26, "text-anchor": "end", class: "arousal-label" },
     legend).textContent = "arousal";

  // music sections
  const gs = el("g", { class: "music" }, svg);
  for (const m of timeline.music || []) {
    const x0 = x(m.start_s), x1 = x(m.end_s ?? duration);
    const sec = el("g", { class: "music-section", "data-emotion": m.emotion || "" }, gs);
    el("rect", { x: x0, y: rows.music, width: Math.max(1, x1 - x0 - 1), height: rows.musicH, rx: 3,
                 class: "music-rect" }, sec);
    const name = [m.style, m.key && `${m.key} ${m.mode || ""}`.trim(), m.tempo_bpm && `${Math.round(m.tempo_bpm)} bpm`]
      .filter(Boolean).join(" · ") || m.title || m.track || "music";
    if (x1 - x0 > 60) el("text", { x: x0 + 5, y: rows.music + 14, class: "music-label" }, sec).textContent = name;
    el("title", {}, sec).textContent = `${name}: ${fmtTime(m.start_s)} - ${fmtTime(m.end_s ?? duration)}`;
  }

  // time axis
  const ga = el("g", { class: "axis" }, svg);
  const step = tickStep(duration, width);
  for (let t = 0; t <= duration + 1e-6; t += step) {
    el("line", { x1: x(t), x2: x(t), y1: rows.axis, y2: rows.axis + 4, class: "tick" }, ga);
    el("text", { x: x(t), y: rows.axis + 15, "text-anchor": "middle", class: "axis-label" }, ga).textContent = fmtTime(t);
  }

  const head = el("line", { x1: x(0), x2: x(0), y1: 0, y2: rows.axis, class: "playhead" }, svg);
  if (onSeek) {
    svg.addEventListener("click", (ev) => {
      const r = svg.getBoundingClientRect();
      const px = (ev.clientX - r.left) * (width / r.width);
      onSeek(((px - pad.left) / (width - pad.left - pad.right)) * duration);
    });
  }
  return {
    svg,
    setPlayhead(t) {
      const px = x(t);
      head.setAttribute("x1", px);
      head.setAttribute("x2", px);
    },
  };
}

/** A plain-text list of the mood segments (for screen readers, and under the drawing on narrow screens). */
export function segmentList(ol, timeline) {
  ol.replaceChildren();
  for (const s of timeline.segments || []) {
    const li = document.createElement("li");
    li.dataset.emotion = s.emotion;
    li.textContent = `${fmtTime(s.start_s)} - ${fmtTime(s.end_s)}: ${s.emotion} (valence ${Number(s.valence).toFixed(2)}, `
      + `arousal ${Number(s.arousal).toFixed(2)})`;
    ol.appendChild(li);
  }
}
