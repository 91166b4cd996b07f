// The creators' studio: upload a video as an async job, follow it over server-sent events, draw its mood
// timeline, play the scored video, re-render only the music in another style or seed and A/B the versions,
// list library tracks that fit with a preview each, and download every result. Static, no CDN.

import { ApiError, JobsClient } from "/static/jobs.js";
import { drawTimeline, segmentList } from "/static/timeline.js";

const $ = (id) => document.getElementById(id);
const api = new JobsClient(() => $("apikey").value.trim());
const KEY_STORE = "backscore.apikey";

const state = {
  file: null,
  analysed: null, // the first score job: its upload and analysis are reused by every later job
  job: null, // the job in progress
  versions: [], // {n, job, label, videoUrl, bgmUrl}
  current: null,
  timeline: null,
  thumbnails: [],
  thumbs: [], // the thumbnails as object URLs
  recommendations: [],
  events: [], // every status seen over the events streams (for the tests and for people debugging)
  error: null,
  busy: false,
};

function fmtEta(s) {
  if (s === null || s === undefined) return "";
  return s < 60 ? `, about ${Math.ceil(s)} s left` : `, about ${Math.ceil(s / 60)} min left`;
}

function showError(where, err) {
  const msg = err instanceof ApiError
    ? `${err.message}${err.retryAfter ? ` (try again in ${err.retryAfter} s)` : ""}`
    : String(err && err.message ? err.message : err);
  $(where).textContent = msg;
  state.error = msg;
}

function setBusy(busy) {
  state.busy = busy;
  $("go").disabled = busy || !state.file;
  $("rerender").disabled = busy || !state.analysed;
  $("recommend").disabled = busy || !state.analysed;
  $("cancel").hidden = !busy;
  for (const b of document.querySelectorAll(".use-track")) b.disabled = busy;
}

function chooseFile(file) {
  $("upload-error").textContent = "";
  state.error = null;
  if (!file) return;
  if (file.type && !file.type.startsWith("video/")) {
    // the server checks the contents too; this saves uploading something that is plainly not a video
    showError("upload-error", `${file.name} is not a video (${file.type}): choose an MP4, MOV, WebM or similar file`);
    state.file = null;
    setBusy(false);
    return;
  }
  state.file = file;
  $("drop-text").textContent = `${file.name} (${(file.size / 1e6).toFixed(1)} MB)`;
  setBusy(false);
}

function onStatus(status) {
  state.job = status;
  state.events.push({ id: status.id, state: status.state, stage: status.stage, fraction: status.fraction,
                      stages_run: status.stages_run });
  $("job-progress").value = status.fraction || 0;
  const stage = status.stage ? `${status.stage}` : status.state;
  $("job-state").textContent = `${status.kind}: ${stage} ${Math.round(100 * (status.fraction || 0))} %`
    + (status.state === "running" ? fmtEta(status.eta_s) : ` (${status.state})`);
}

async function runJob(started, errorSlot) {
  onStatus(started);
  const last = await api.follow(started, onStatus);
  state.job = null;
  if (last.state !== "done") {
    const e = last.error || { type: last.state, message: `the job was ${last.state}` };
    throw new ApiError(0, e.type, e.message);
  }
  $(errorSlot).textContent = "";
  return last;
}

async function addVersion(job, trackTitle = null) {
  const n = state.versions.length + 1;
  const o = job.options || {};
  const label = o.track ? `Version ${n}: library track ${o.track}${trackTitle ? ` "${trackTitle}"` : ""}`
    : `Version ${n}: ${o.style || "auto"}, seed ${o.seed ?? 0}`;
  const videoUrl = job.results.video ? await api.blobUrl(job.results.video.url) : null;
  const version = { n, job, label, videoUrl, timeline: n === 1 ? state.timeline : null };
  state.versions.push(version);
  const list = $("version-list");
  const id = `version-${n}`;
  const wrap = document.createElement("label");
  wrap.className = "version";
  wrap.innerHTML = `<input type="radio" name="version" id="${id}" value="${n}"> <span></span>`;
  wrap.querySelector("span").textContent = label;
  wrap.querySelector("input").addEventListener("change", () => selectVersion(n));
  list.appendChild(wrap);
  await selectVersion(n);
  listDownloads(job);
  return version;
}

async function selectVersion(n) {
  const v = state.versions.find((x) => x.n === n);
  if (!v || !v.videoUrl) return;
  if (!v.timeline && v.job.results.timeline) { // its music sections: the mood part is the analysed video's
    v.timeline = await api.json(v.job.results.timeline.url).catch(() => null);
  }
  if (v.timeline) {
    state.timeline = v.timeline;
    redraw(state.thumbs);
  }
  const player = $("player");
  const at = player.currentTime || 0;
  const playing = !player.paused;
  state.current = n;
  $(`version-${n}`).checked = true;
  player.src = v.videoUrl;
  player.addEventListener("loadedmetadata", () => {
    player.currentTime = Math.min(at, player.duration || at);
    if (playing) player.play().catch(() => {});
  }, { once: true });
}

const RESULT_NAMES = { video: "scored video (MP4)", bgm: "music only (WAV)", timeline: "timeline (JSON)",
                       plot: "timeline plot (PNG)", midi: "score (MIDI)", recommendations: "recommendations (JSON)" };

function listDownloads(job) {
  const ul = $("downloads");
  ul.replaceChildren();
  for (const [role, file] of Object.entries(job.results || {})) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = file.url;
    a.textContent = RESULT_NAMES[role] || role.replace("stem_", "stem: ");
    a.dataset.role = role;
    const name = file.url.split("/").pop();
    a.download = name;
    a.addEventListener("click", async (ev) => { // with an API key the link needs the header: fetch it
      if (!$("apikey").value.trim()) return;
      ev.preventDefault();
      const link = document.createElement("a");
      link.href = await api.blobUrl(file.url);
      link.download = name;
      link.click();
    });
    li.appendChild(a);
    li.append(` (${(file.size / 1e6).toFixed(2)} MB)`);
    ul.appendChild(li);
  }
}

async function showAnalysis(job) {
  state.timeline = await api.json(job.results.timeline.url);
  try {
    state.thumbnails = (await api.json(job.thumbnails_url)).thumbnails || [];
  } catch (_) {
    state.thumbnails = [];
  }
  state.thumbs = await Promise.all(state.thumbnails.map(async (t) => ({ t: t.t, url: await api.blobUrl(t.url) })));
  $("result-panel").hidden = false;
  $("tabs").hidden = false;
  redraw(state.thumbs);
}

let timelineView = null;
function redraw(thumbs) {
  timelineView = drawTimeline($("timeline"), state.timeline, thumbs, (t) => { $("player").currentTime = t; });
  segmentList($("segments"), state.timeline);
}

async function upload() {
  if (!state.file || state.busy) return;
  setBusy(true);
  $("upload-error").textContent = "";
  $("progress").hidden = false;
  $("upload-progress").value = 0;
  $("job-progress").value = 0;
  try {
    const options = { kind: "score", style: $("style").value, seed: $("seed").value, loudness: $("loudness").value,
                      outputs: "video,bgm,timeline,plot,midi,stems" };
    const started = await api.upload(state.file, options, (sent, total) => {
      $("upload-progress").value = total ? sent / total : 0;
    });
    $("upload-progress").value = 1;
    const job = await runJob(started, "upload-error");
    state.analysed = job;
    state.versions = [];
    $("version-list").replaceChildren();
    await showAnalysis(job);
    await addVersion(job);
    $("restyle").value = $("style").value;
  } catch (err) {
    showError("upload-error", err);
  } finally {
    setBusy(false);
  }
}

async function rerender(extra, trackTitle = null) {
  if (!state.analysed || state.busy) return;
  setBusy(true);
  try {
    // a library track plays as it is: it has no score to export as MIDI
    const outputs = ["video", "bgm", "timeline", "plot", ...(extra.track ? [] : ["midi", "stems"])];
    const started = await api.start({ from_job: state.analysed.id, kind: "score", outputs, ...extra });
    const job = await runJob(started, "result-error");
    await addVersion(job, trackTitle);
    selectTab("compose");
  } catch (err) {
    showError("result-error", err);
  } finally {
    setBusy(false);
  }
}

async function recommend() {
  if (!state.analysed || state.busy) return;
  setBusy(true);
  $("recommend-state").textContent = "Ranking the library...";
  try {
    const started = await api.start({ from_job: state.analysed.id, kind: "recommend", library: $("library").value,
                                      top_k: Number($("topk").value) || 5 });
    const job = await runJob(started, "recommend-state");
    state.recommendations = (job.result && job.result.recommendations) || [];
    $("recommend-state").textContent = job.result && job.result.mood ? `The video: ${job.result.mood}` : "";
    await listTracks(state.recommendations);
  } catch (err) {
    showError("recommend-state", err);
  } finally {
    setBusy(false);
  }
}

async function listTracks(recs) {
  const ol = $("tracks");
  ol.replaceChildren();
  for (const r of recs) {
    const li = document.createElement("li");
    li.className = "track";
    li.dataset.trackId = r.track_id;
    const title = document.createElement("strong");
    title.textContent = `${r.title} `;
    const score = document.createElement("span");
    score.className = "small";
    score.textContent = `fit ${(100 * r.score).toFixed(0)} %`;
    const why = document.createElement("p");
    why.className = "small";
    why.textContent = r.reason;
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "none";
    audio.setAttribute("aria-label", `Preview of ${r.title}`);
    audio.addEventListener("play", async () => { // fetched on first play (with the key, if any)
      if (audio.dataset.loaded) return;
      audio.dataset.loaded = "1";
      audio.src = await api.blobUrl(r.preview_url);
      audio.play().catch(() => {});
    }, { once: false });
    const use = document.createElement("button");
    use.type = "button";
    use.className = "use-track";
    use.textContent = "Use this track";
    use.addEventListener("click", () => rerender({ track: r.track_id }, r.title));
    li.append(title, score, why, audio, use);
    ol.appendChild(li);
  }
}

function selectTab(name) {
  for (const [tab, panel] of [["compose", "result-panel"], ["recommend", "recommend-panel"]]) {
    const on = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(on));
    $(`tab-${tab}`).tabIndex = on ? 0 : -1;
    $(panel).hidden = !on;
  }
}

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", () => chooseFile($("file").files[0]));
  drop.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("file").click(); }
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); chooseFile(ev.dataTransfer.files[0]); });
  $("go").addEventListener("click", upload);
  $("cancel").addEventListener("click", async () => { if (state.job) await api.cancel(state.job).catch(() => {}); });
  $("rerender").addEventListener("click", () => rerender({ style: $("restyle").value, seed: Number($("reseed").value) }));
  $("recommend").addEventListener("click", recommend);
  $("tab-compose").addEventListener("click", () => selectTab("compose"));
  $("tab-recommend").addEventListener("click", () => selectTab("recommend"));
  $("tabs").addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight") return;
    const next = $("tab-compose").getAttribute("aria-selected") === "true" ? "recommend" : "compose";
    selectTab(next);
    $(`tab-${next}`).focus();
  });
  window.addEventListener("resize", () => state.timeline && redraw(state.thumbs));
  $("player").addEventListener("timeupdate", () => timelineView && timelineView.setPlayhead($("player").currentTime));
  const key = $("apikey");
  key.value = sessionStorage.getItem(KEY_STORE) || "";
  key.addEventListener("change", () => sessionStorage.setItem(KEY_STORE, key.value.trim()));
  setBusy(false);
}

wire();
// For tests and for people poking at it in the console.
window.studio = { state, upload, rerender, recommend, selectVersion, selectTab };
