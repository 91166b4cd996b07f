// The async job API (/v1/jobs) from the browser: upload with progress, server-sent events read with fetch
// (so an API key can go in the Authorization header, which EventSource cannot send), results as blob URLs.

export class ApiError extends Error {
  constructor(status, type, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.type = type;
    this.retryAfter = retryAfter;
  }
}

export class JobsClient {
  constructor(keyProvider = () => "") {
    this.key = keyProvider;
  }

  headers(extra = {}) {
    const key = this.key();
    return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
  }

  async _error(resp) {
    let type = "HTTPError";
    let message = `${resp.status} ${resp.statusText}`;
    try {
      const body = await resp.json();
      if (body && body.error) ({ type, message } = body.error);
    } catch (_) { /* not JSON */ }
    throw new ApiError(resp.status, type, message, resp.headers.get("Retry-After"));
  }

  async json(url, init = {}) {
    const resp = await fetch(url, { ...init, headers: this.headers(init.headers || {}) });
    if (!resp.ok) await this._error(resp);
    return resp.status === 204 ? null : resp.json();
  }

  /** Upload `file` as a new job (options as query parameters); `onProgress(sent, total)`. Resolves to the
   *  job's status (202), rejects with an ApiError carrying the server's message. */
  upload(file, options, onProgress) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(options)) if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
    const form = new FormData();
    form.append("file", file, file.name);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/v1/jobs?${q}`);
      for (const [k, v] of Object.entries(this.headers())) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (ev) => onProgress && onProgress(ev.loaded, ev.lengthComputable ? ev.total : file.size);
      xhr.onerror = () => reject(new ApiError(0, "NetworkError", "the upload did not reach the server"));
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else {
          const e = (body && body.error) || { type: "HTTPError", message: `${xhr.status} ${xhr.statusText}` };
          reject(new ApiError(xhr.status, e.type, e.message, xhr.getResponseHeader("Retry-After")));
        }
      };
      xhr.send(form);
    });
  }

  /** A job from an earlier job's upload and analysis (no upload): `{from_job, kind, style, seed, track, ...}`. */
  start(request) {
    return this.json("/v1/jobs", { method: "POST", body: JSON.stringify(request),
                                    headers: { "Content-Type": "application/json" } });
  }

  /** Follow a job's server-sent events until it ends; `onStatus(status)` for each. Resolves to the last status.
   *  A dropped stream is resumed with Last-Event-ID. */
  async follow(job, onStatus, signal = null) {
    let lastId = null;
    let status = job;
    for (let attempt = 0; attempt < 5; attempt++) {
      const headers = this.headers({ Accept: "text/event-stream" });
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const resp = await fetch(job.events_url, { headers, signal });
      if (!resp.ok) await this._error(resp);
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("id:")) lastId = line.slice(3).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (!data) continue;
          status = JSON.parse(data);
          onStatus(status);
          if (["done", "failed", "cancelled"].includes(status.state)) return status;
        }
      }
    }
    return status;
  }

  /** A result as an object URL (fetched with the key, so <video>/<audio>/<a download> work with API keys). */
  async blobUrl(url) {
    const resp = await fetch(url, { headers: this.headers() });
    if (!resp.ok) await this._error(resp);
    return URL.createObjectURL(await resp.blob());
  }

  cancel(job) {
    return this.json(job.url, { method: "DELETE" });
  }
}
