// backscore live demo: camera or video file -> WebRTC -> BGM back + mood reports on the "mood" data channel.
// Plain JS, no dependencies. window.backscore exposes start/stop and a snapshot for tests.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const EMOTION_COLORS = {
    exciting: "#ff7043", happy: "#ffd54f", relaxing: "#81c784", neutral: "#b0bec5",
    sad: "#64b5f6", tense: "#ba68c8", fearful: "#9575cd",
  };
  const state = {
    state: "idle", sessionId: null, pc: null, channel: null, stream: null, reports: [], last: null,
    trail: [], stats: { packets: 0, bytes: 0, level: 0, maxLevel: 0, jitterMs: null }, rttMs: null, error: null,
  };
  let audioCtx = null, analyser = null, timers = [];
  const VIDEO_CONSTRAINTS = { width: { ideal: 640 }, frameRate: { ideal: 15, max: 30 } };

  function setState(s) { state.state = s; $("state").textContent = s; }

  // The API key (when the server asks for one) lives in this tab only: sessionStorage, never localStorage.
  const KEY_STORE = "backscore.apiKey";
  function apiKey() { return $("apikey").value.trim(); }
  function authHeaders() { const k = apiKey(); return k ? { Authorization: `Bearer ${k}` } : {}; }
  try { $("apikey").value = sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { /* storage disabled */ }
  $("apikey").addEventListener("change", () => {
    try {
      if (apiKey()) sessionStorage.setItem(KEY_STORE, apiKey()); else sessionStorage.removeItem(KEY_STORE);
    } catch (e) { /* storage disabled */ }
  });

  function showError(msg) {
    state.error = msg;
    $("error").textContent = msg;
    $("error").hidden = !msg;
  }

  async function getSource(mode) {
    if (mode === "file") {
      const file = $("file").files[0];
      const video = $("preview");
      if (!file && !video.src) throw new Error("choose a video file first");
      if (file) video.src = URL.createObjectURL(file);
      video.muted = true; // its sound goes to the server, not the speakers
      video.loop = true;
      await video.play();
      const capture = video.captureStream ? video.captureStream() : video.mozCaptureStream();
      return capture;
    }
    let stream;
    try {
      // the analysis needs little: 96 px thumbnails at 6 fps, 256 px for faces; ask for a light stream
      stream = await navigator.mediaDevices.getUserMedia({ video: VIDEO_CONSTRAINTS, audio: true });
    } catch (e) {
      stream = await navigator.mediaDevices.getUserMedia({ video: VIDEO_CONSTRAINTS, audio: false });
    }
    const video = $("preview");
    video.srcObject = stream;
    video.muted = true;
    video.play().catch(() => {});
    return stream;
  }

  function waitForIce(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, 3000); // do not wait forever for unreachable STUN servers
    });
  }

  function listenTo(stream) {
    const audio = $("bgm");
    audio.srcObject = stream;
    audio.play().catch(() => {});
    try {
      audioCtx = audioCtx || new AudioContext();
      audioCtx.resume().catch(() => {});
      const src = audioCtx.createMediaStreamSource(stream);
      analyser = audioCtx.createAnalyser();
      analyser.fftSize = 2048;
      src.connect(analyser); // analysis only; the <audio> element plays it
    } catch (e) {
      analyser = null;
    }
  }

  function level() {
    if (!analyser) return 0;
    const buf = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(buf);
    let s = 0;
    for (const x of buf) s += x * x;
    return Math.sqrt(s / buf.length);
  }

  async function pollStats() {
    const pc = state.pc;
    if (!pc) return;
    const report = await pc.getStats();
    report.forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "audio") {
        state.stats.packets = r.packetsReceived || 0;
        state.stats.bytes = r.bytesReceived || 0;
        state.stats.jitterMs = r.jitter !== undefined ? Math.round(r.jitter * 1000) : null;
      }
    });
    const l = level();
    state.stats.level = l;
    state.stats.maxLevel = Math.max(state.stats.maxLevel, l);
    $("level").value = l;
    $("netstats").textContent = `${state.stats.packets} packets, ${Math.round(state.stats.bytes / 1024)} KiB` +
      (state.stats.jitterMs !== null ? `, jitter ${state.stats.jitterMs} ms` : "");
  }

  function onMessage(ev) {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if (msg.type === "pong") {
      if (typeof msg.t === "number") state.rttMs = Math.round(performance.now() - msg.t);
      $("rtt").textContent = state.rttMs !== null ? `${state.rttMs} ms` : "–";
    } else if (msg.type === "end") {
      showError(`the server ended the session: ${msg.reason}`);
    } else if (msg.type === "mood") {
      msg.received_at = performance.now();
      state.last = msg;
      state.reports.push(msg);
      if (state.reports.length > 600) state.reports.shift();
      state.trail.push([msg.valence, msg.arousal, msg.emotion]);
      if (state.trail.length > 30) state.trail.shift();
      render(msg);
    }
  }

  function render(m) {
    $("emotion").textContent = m.emotion;
    $("emotion").style.color = EMOTION_COLORS[m.emotion] || "#f0a04b";
    $("confidence").textContent = `${Math.round(100 * m.confidence)} %`;
    $("va").textContent = `${m.valence.toFixed(2)} / ${m.arousal.toFixed(2)}`;
    const mu = m.music;
    $("tempo").textContent = mu ? `${mu.tempo_bpm} bpm` : "–";
    $("key").textContent = mu ? `${mu.key} ${mu.mode}` : "–";
    $("mstyle").textContent = mu ? mu.style : "–";
    $("mengine").textContent = mu && mu.engine ? mu.engine + (mu.engine_note ? ` (${mu.engine_note})` : "") : "–";
    $("chord").textContent = mu && mu.chord ? mu.chord : "–";
    $("changes").textContent = m.mood_changes + (m.last_change_latency_s !== null
      ? ` (last reached the music in ${m.last_change_latency_s} s)` : "");
    $("underruns").textContent = m.underruns;
    $("analysis").textContent = ["full", "half frame rate (server busy)", "half frame rate, no faces (server busy)"][
      m.degraded || 0] || "–";
    drawPlane();
  }

  function drawPlane() {
    const c = $("plane"), g = c.getContext("2d"), w = c.width, h = c.height;
    const px = (v) => (v + 1) / 2 * w, py = (a) => (1 - (a + 1) / 2) * h;
    g.clearRect(0, 0, w, h);
    g.strokeStyle = "#3a3f4b"; g.lineWidth = 1;
    g.beginPath(); g.moveTo(w / 2, 0); g.lineTo(w / 2, h); g.moveTo(0, h / 2); g.lineTo(w, h / 2); g.stroke();
    g.fillStyle = "#6b7080"; g.font = "11px system-ui";
    g.fillText("arousal +", w / 2 + 4, 12); g.fillText("arousal −", w / 2 + 4, h - 4);
    g.fillText("valence −", 4, h / 2 - 4); g.fillText("valence +", w - 56, h / 2 - 4);
    g.fillText("tense", 12, 26); g.fillText("exciting", w - 60, 26);
    g.fillText("sad", 12, h - 12); g.fillText("relaxing", w - 60, h - 12);
    const t = state.trail;
    for (let i = 1; i < t.length; i++) {
      g.strokeStyle = `rgba(240,160,75,${i / t.length})`; g.lineWidth = 2;
      g.beginPath(); g.moveTo(px(t[i - 1][0]), py(t[i - 1][1])); g.lineTo(px(t[i][0]), py(t[i][1])); g.stroke();
    }
    if (t.length) {
      const [v, a, e] = t[t.length - 1];
      g.fillStyle = EMOTION_COLORS[e] || "#f0a04b";
      g.beginPath(); g.arc(px(v), py(a), 8, 0, 2 * Math.PI); g.fill();
    }
  }

  async function start(mode) {
    if (state.pc) return state.sessionId;
    mode = mode || document.querySelector("input[name=source]:checked").value;
    showError(null);
    setState("starting");
    $("start").disabled = true;
    try {
      state.stream = await getSource(mode);
      const pc = state.pc = new RTCPeerConnection();
      const channel = state.channel = pc.createDataChannel("mood");
      channel.onmessage = onMessage;
      channel.onopen = () => {
        timers.push(setInterval(() => {
          if (channel.readyState === "open") channel.send(JSON.stringify({ type: "ping", t: performance.now() }));
        }, 2000));
      };
      const tracks = state.stream.getTracks();
      for (const track of tracks) pc.addTrack(track, state.stream);
      const sendsAudio = tracks.some((t) => t.kind === "audio");
      if (!sendsAudio) pc.addTransceiver("audio", { direction: "recvonly" }); // still receive the BGM
      pc.ontrack = (ev) => { if (ev.track.kind === "audio") listenTo(ev.streams[0] || new MediaStream([ev.track])); };
      pc.onconnectionstatechange = () => {
        setState(pc.connectionState);
        if (pc.connectionState === "failed" || pc.connectionState === "closed") stop();
      };
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIce(pc);
      const body = {
        sdp: pc.localDescription.sdp, type: pc.localDescription.type,
        style: $("style").value, mix_original: $("mix").checked,
        ...($("engine").value ? { engine: $("engine").value } : {}),
      };
      const resp = await fetch("/v1/webrtc/offer", {
        method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() }, body: JSON.stringify(body),
      });
      const answer = await resp.json();
      if (resp.status === 401) throw new Error(`${answer.error.message} -- paste your key in the API key field`);
      if (resp.status === 503 && resp.headers.get("Retry-After")) {  // busy: say when to try again
        throw new Error(`${answer.error.message} (retry in ${resp.headers.get("Retry-After")} s)`);
      }
      if (!resp.ok) throw new Error(answer.error ? answer.error.message : `HTTP ${resp.status}`);
      state.sessionId = answer.session_id;
      await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
      timers.push(setInterval(() => { pollStats().catch(() => {}); }, 500));
      $("stop").disabled = false;
      return state.sessionId;
    } catch (e) {
      showError(String(e && e.message ? e.message : e));
      await stop();
      throw e;
    }
  }

  async function stop() {
    timers.forEach(clearInterval);
    timers = [];
    const pc = state.pc, id = state.sessionId;
    state.pc = null; state.sessionId = null; state.channel = null;
    if (id) fetch(`/v1/webrtc/${id}`, { method: "DELETE", headers: authHeaders() }).catch(() => {});
    if (pc) pc.close();
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    state.stream = null;
    const video = $("preview");
    video.pause();
    video.srcObject = null;
    setState("idle");
    $("start").disabled = false;
    $("stop").disabled = true;
  }

  function snapshot() {
    return {
      state: state.state, sessionId: state.sessionId, error: state.error, stats: state.stats, rttMs: state.rttMs,
      last: state.last, reports: state.reports.map((r) => ({
        emotion: r.emotion, valence: r.valence, arousal: r.arousal, confidence: r.confidence,
        media_s: r.media_s, underruns: r.underruns, music: r.music, received_at: r.received_at,
      })),
    };
  }

  $("start").addEventListener("click", () => { start().catch(() => {}); });
  $("stop").addEventListener("click", () => { stop(); });
  $("file").addEventListener("change", () => { document.querySelector("input[value=file]").checked = true; });
  window.addEventListener("pagehide", () => { stop(); });
  drawPlane();
  window.backscore = { start, stop, snapshot, state };
})();
